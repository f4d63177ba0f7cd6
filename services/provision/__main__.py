"""`make provision` (`python -m services.provision [--dry-run] [--only STEP ...]`).

Creates every resource of the pipeline idempotently, with the same code for LocalStack and a real AWS account:
only settings differ. With `PIPELINE_TARGET=aws` the settings every selected step needs are checked first, all of
them, before any AWS call and in `--dry-run` too (`services/provision/preflight.py`); the dry run ends with what the
plan costs (`services/provision/costs.py`). `make deprovision` (`services/provision/teardown.py`) walks the same
steps backwards.

The step interface (one `Step(...)` line in `STEPS` plugs a part in; `Step` is in `steps.py`; every target is a
"module:function" string, imported only when used, so a step whose module does not exist yet is skipped):

- `provision(settings, dry_run: bool) -> list[str]`: create or update the part's resources; return one line per
  thing done (with `dry_run`, would be done). Whether the part is chosen comes from settings (e.g. the batch runner,
  `API_KEY_REQUIRED`, `KINESIS_SHARDS`): a part not chosen returns a line saying so and touches nothing.
- `deprovision(settings, dry_run: bool) -> list[str]` (optional): with `dry_run`, list what the part would delete
  (read calls only); else delete it. Only resources with the part's names (`settings`) AND the project's tags
  (`settings.resource_tags`, set at creation where AWS supports tags) are ever touched: describe each found resource
  as a `teardown.Found` and hand them to `teardown.sweep`, which checks the tags, lists or deletes (an IAM role:
  `teardown.role`).
- `requires(settings) -> list[str]` (optional): the problems with the settings this part needs on the aws target,
  one line each naming the variable and what to set (helpers in `preflight.py`); no AWS call. Run only on the aws
  target, for the selected steps.
- `costs(settings) -> list[str]` (optional): what the part costs while it exists or per use, rough list prices
  (helpers and the price table in `costs.py`); printed by the dry run.
"""

from __future__ import annotations

import argparse
import sys

from pipeline.settings import Settings, get_settings
from services.provision import costs, preflight
from services.provision.steps import Step, load, run_step

# In dependency order; teardown runs them backwards.
STEPS: list[Step] = [
    Step(
        "bucket",
        "services.provision.s3:provision_bucket",
        deprovision="services.provision.s3:deprovision_bucket",
        costs="services.provision.costs:bucket",
    ),
    Step(
        "iam",
        "services.provision.iam:provision_iam",
        deprovision="services.provision.iam:deprovision_iam",
        requires="services.provision.iam:requires",
    ),
    Step(
        "topics",
        "services.provision.kafka:provision_topics",
        deprovision="services.provision.kafka:deprovision_topics",
        requires="services.provision.preflight:kafka_cluster",
        costs="services.provision.costs:msk_cluster",
    ),
    Step(
        "connector",
        "services.provision.kafka:provision_connector",
        deprovision="services.provision.kafka:deprovision_connector",
        requires="services.provision.preflight:connect_worker",
    ),
    Step(
        "msk-connect",
        "services.provision.msk_connect:provision_msk_connect",
        deprovision="services.provision.msk_connect:deprovision_msk_connect",
        requires="services.provision.msk_connect:requires",
        costs="services.provision.msk_connect:costs",
    ),
    Step(
        "streams",
        "services.provision.aws:provision_streams",
        deprovision="services.provision.aws:deprovision_streams",
        costs="services.provision.costs:kinesis",
    ),
    Step(
        "api",
        "services.provision.aws:provision_api",
        deprovision="services.provision.aws:deprovision_api",
        requires="services.provision.preflight:rest_proxy",
        costs="services.provision.costs:api_gateway",
    ),
    Step(
        "job",
        "services.provision.jobs:provision_job",
        deprovision="services.provision.jobs:deprovision_job",
        requires="services.provision.jobs:requires_job",
        costs="services.provision.jobs:costs_job",
    ),
]


def selected(only: list[str] | None) -> list[Step]:
    return [step for step in STEPS if not only or step.name in only]


def step_names() -> list[str]:
    return [step.name for step in STEPS]


def main(argv: list[str] | None = None, settings: Settings | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.provision", description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="check settings, print the plan and its costs")
    parser.add_argument("--only", nargs="*", choices=step_names(), help="steps to run")
    args = parser.parse_args(argv)
    settings = settings or get_settings()
    steps = selected(args.only)
    preflight.check(settings, steps)
    print(
        f"provisioning for target={settings.pipeline_target} user={settings.pipeline_user_id}"
        + (" (dry run)" if args.dry_run else "")
    )
    for step in steps:
        if (provision := load(step.provision)) is not None:
            run_step(step.name, provision, settings, args.dry_run)
    if args.dry_run:
        costs.report(settings, steps)
    return 0


if __name__ == "__main__":
    sys.exit(main())
