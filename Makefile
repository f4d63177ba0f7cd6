# The pipeline on this machine. `make up` starts it, `make test` tests it. `make help` lists everything.
SHELL := /bin/bash
.DEFAULT_GOAL := help

STATE ?= .state
VENV := $(STATE)/venv
PY := $(VENV)/bin/python
export PYTHONPATH := $(CURDIR)

ROWS ?= 11154
ROUNDS ?= 2
SEED ?= 42
MODE ?= batch
COUNT ?= 100
RATE ?=
BURST ?=
TARGET ?= auto
CONCURRENCY ?=
NO_ADAPT ?=
PYTEST_ARGS ?=
SERVICE ?=
FOLLOW ?=
LINES ?= 40
IND ?=
# The integration tests CI runs in Docker mode, after the whole suite in native mode (README: Tests): both ingestion
# paths end to end through the gateway, the batch job, the streaming job with its kill -9 and restart and under kills
# of the Kinesis store and LocalStack, the Kinesis store's durability and status, single-record requests through the
# gateway, the DAG on the Spark cluster, the broker's kill -9, and the console. `STACK=docker make test` runs the whole suite.
# The streaming source's resume after vanished sequence numbers is the job's own logic, the same in both modes: native only.
DOCKER_TESTS ?= tests/integration/test_end_to_end.py tests/integration/test_batch_job.py \
	tests/integration/test_streaming.py::test_records_from_kinesis_and_the_gateway_land_once_in_delta \
	tests/integration/test_streaming.py::test_a_crash_between_the_delta_commit_and_the_checkpoint_on_s3_replays_skips_and_repeats_nothing \
	tests/integration/test_streaming.py::test_kill_9_of_the_kinesis_store_and_of_localstack_under_load_loses_and_repeats_nothing \
	tests/integration/test_airflow_dag_run.py \
	tests/integration/test_kinesis_store.py \
	tests/integration/test_gateway.py::test_single_record_requests_with_8_in_flight_are_all_acknowledged_and_land \
	tests/integration/test_faults.py::test_records_acknowledged_by_the_proxy_survive_a_kill_9_of_the_broker \
	tests/integration/test_console.py::test_the_stacks_console_serves_the_flow
# native | docker | auto (default: Docker Compose when a Docker engine answers, else native; see scripts/stack_mode.sh)
STACK ?= auto
STACK_MODE = mode=$$(STACK=$(STACK) STATE_DIR=$(STATE) scripts/stack_mode.sh) || exit 2
# A project command in the current mode: the venv natively, a one-off container of the project image in Docker mode.
RUN := STACK=$(STACK) STATE_DIR=$(STATE) scripts/stack_run.sh
# Docker Compose with the stack's state folder and the build's CA bundle.
COMPOSE := STATE_DIR=$(STATE) scripts/compose.sh

EMULATE_ARGS := --mode $(MODE) --count $(COUNT) --target $(TARGET) \
	$(if $(RATE),--rate $(RATE)) $(if $(BURST),--burst) $(if $(CONCURRENCY),--concurrency $(CONCURRENCY)) \
	$(if $(NO_ADAPT),--no-adapt)

.PHONY: logs restart open trace drill stream stream-stop help setup up up-native down status clean distclean seed emulate provision deprovision deploy-dag verify batch dag-test maintain \
	test test-unit test-integration test-docker lint format bench

help: ## list the commands
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

setup: ## install everything the stack needs (apt, virtualenvs, jars); idempotent
	@scripts/setup.sh

up: ## start the whole pipeline and provision its resources; idempotent (Docker Compose if an engine answers; STACK=native|docker)
	@$(STACK_MODE); \
	if [ "$$mode" = docker ]; then STATE_DIR=$(STATE) scripts/compose_up.sh; else $(MAKE) --no-print-directory up-native; fi \
	  && mkdir -p $(STATE) && echo "$$mode" > $(STATE)/stack_mode
	@if [ -x $(PY) ]; then $(PY) -m services.everyday next; else echo "console: http://127.0.0.1:$${CONSOLE_PORT:-8070}"; fi

up-native: setup
	@$(PY) -m services.runner up
	@$(PY) -m services.provision

down: ## stop everything the stack started, in either mode (data is kept)
	@STATE_DIR=$(STATE) scripts/stack_down.sh

status: ## what runs, where, and whether it answers
	@$(STACK_MODE); \
	if [ "$$mode" = docker ]; then $(COMPOSE) ps --all && $(RUN) -m services.runner status; \
	else $(PY) -m services.runner status; fi

clean: ## stop the stack and delete its data and logs, in either mode (keeps virtualenvs and downloaded jars)
	@STATE_DIR=$(STATE) scripts/stack_down.sh --volumes

distclean: clean ## also delete virtualenvs and downloaded jars
	rm -rf $(STATE)

seed: ## fill the MySQL source (ROWS=11154 SEED=42); replaces existing data
	@$(RUN) -m services.mysql.seed --rows $(ROWS) --seed $(SEED)

emulate: ## post users' posts (MODE=batch|stream COUNT=100 RATE= BURST=1 TARGET=auto|gateway|proxy NO_ADAPT=1)
	@$(RUN) -m emulator $(EMULATE_ARGS)

provision: ## create topics, bucket, connector, streams and the API (idempotent; ARGS=--dry-run: checks, plan, costs)
	@$(RUN) -m services.provision $(ARGS)

logs: ## a service's log, or every service's (SERVICE=name FOLLOW=1 LINES=40), in either mode
	@$(PY) -m services.everyday logs $(if $(SERVICE),--service $(SERVICE)) $(if $(FOLLOW),--follow) --lines $(LINES)

restart: ## restart one service and wait until it is ready (SERVICE=name), in either mode
	@test -n "$(SERVICE)" || { echo "make restart needs SERVICE=<name> (make status lists them)"; exit 2; }
	@$(PY) -m services.everyday restart $(SERVICE)

open: ## the console's URL (opened in a browser when the machine has one)
	@$(PY) -m services.everyday open

trace: ## where a source row went: ledger -> Kafka offset -> S3 object and line -> batch result; Kinesis -> Delta (IND=<n>)
	@test -n "$(IND)" || { echo "make trace needs IND=<source row> (pin index / geo and user ind)"; exit 2; }
	@$(RUN) -m services.console.trace --ind $(IND) $(ARGS)

deprovision: ## aws target: list what provisioning created (by name and tag), ask, delete it (ARGS=--yes to not ask)
	@$(RUN) -m services.provision.teardown $(ARGS)

deploy-dag: ## aws target: upload the daily DAG, the code it imports and its requirements to MWAA_BUCKET (ARGS=--dry-run)
	$(PY) -m services.provision.mwaa $(ARGS)

verify: ## audit: every Kafka offset in S3 exactly once; every record in the emulator's ledger landed once (S3, Delta)
	@$(RUN) -m services.audit

drill: ## chaos run: ROUNDS= rounds of emulator load, each with a kill -9 of a random service, then the audit (ROUNDS=2)
	@$(PY) -m services.drill --rounds $(ROUNDS) $(ARGS)

batch: ## run the Spark batch job over the bucket (results + report under the bucket's analytics/)
	@$(RUN) -m spark_jobs.batch $(ARGS)

stream: ## start the streaming job (Kinesis -> Delta tables) under the runner; make stream-stop stops it
	@$(STACK_MODE); \
	if [ "$$mode" = docker ]; then $(COMPOSE) --profile stream up -d --wait stream; \
	else $(PY) -m services.runner up --only stream; fi

stream-stop: ## stop the streaming job cleanly (the next start continues exactly-once)
	@$(STACK_MODE); \
	if [ "$$mode" = docker ]; then $(COMPOSE) --profile stream stop stream; \
	else $(VENV)/bin/supervisorctl -c $(STATE)/run/supervisord.conf stop stream; fi

dag-test: ## run today's DAG once (airflow dags test) against the running stack
	@$(RUN) -m services.airflow dag-test

maintain: ## what the daily maintenance DAG does: prune old sink objects and Airflow logs, OPTIMIZE + VACUUM the Delta tables (ARGS=--dry-run)
	@$(RUN) -m orchestration.maintenance $(ARGS)
	@$(RUN) -m spark_jobs.maintenance $(ARGS)

test: setup ## unit tests, then the stack and the integration tests
	@$(MAKE) --no-print-directory test-unit
	@$(MAKE) --no-print-directory up
	@$(MAKE) --no-print-directory test-integration

test-unit: ## fast tests, no services (Python, then the S3 sink plugin's JUnit tests, on Connect 3.7 and 4.1; PYTEST_ARGS='-k name' picks tests)
	@$(PY) -m pytest tests/unit -q $(PYTEST_ARGS)
	@mvn -B -q -f services/s3_sink/pom.xml clean verify

test-integration: ## tests against the running stack, native or Docker mode (make up first; one test: PYTEST_ARGS='-k name')
	@$(PY) -m pytest tests/integration -q -m integration --durations=15 $(PYTEST_ARGS)

test-docker: ## CI's Docker-mode run: the integration tests in DOCKER_TESTS against the compose stack (make up first)
	@STACK=docker $(PY) -m pytest $(DOCKER_TESTS) -q -m integration --durations=10 $(PYTEST_ARGS)

lint: ## ruff check and format check
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/ruff format --check .

format: ## ruff format
	@$(VENV)/bin/ruff format .

bench: ## benchmarks (results appended to docs/BENCHMARKS.md); native mode only
	@$(STACK_MODE); if [ "$$mode" = docker ]; then \
	  echo "make bench measures the native stack (docs/BENCHMARKS.md): make down, then STACK=native make up bench"; exit 2; fi
	@for script in scripts/bench/bench_*.py; do echo "== $$script"; $(PY) $$script || exit 1; done
