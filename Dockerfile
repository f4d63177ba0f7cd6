# syntax=docker/dockerfile:1
# The project image (Python 3.11 + requirements.lock + the pipeline's code), for docker-compose.yml: the REST proxy,
# the one-shot seed and provision services and the emulator run from it, each with its own command. Build context:
# the repository root. Native mode does not use this file; it runs the same modules from .state/venv.

# The REST proxy's native path (native/rest_proxy_json, Rust: the JSON hot path and the shared producer, which builds
# librdkafka from source): an abi3 wheel for Python 3.11, as `make setup` builds it in native mode. Bookworm's python3
# is 3.11; the wheel links the system's libssl3 and zlib, both in the python:3.11-slim-bookworm image below.
FROM rust:1-slim-bookworm AS rest_proxy_json
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends python3 python3-venv \
        make gcc libc6-dev pkg-config libssl-dev zlib1g-dev >/dev/null \
    && python3 -m venv /opt/maturin && /opt/maturin/bin/pip install -q "maturin>=1.5,<2"
COPY native/rest_proxy_json /src
RUN /opt/maturin/bin/maturin build --release --manifest-path /src/Cargo.toml --out /wheels

FROM python:3.11-slim-bookworm AS project
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONPATH=/app \
    STATE_DIR=/app/.state \
    BIND_HOST=0.0.0.0
WORKDIR /app
# Dependencies first: a code change does not reinstall them.
COPY requirements.lock ./
RUN pip install -r requirements.lock
COPY --from=rest_proxy_json /wheels /tmp/wheels
RUN pip install /tmp/wheels/*.whl && rm -rf /tmp/wheels
COPY pipeline ./pipeline
COPY services ./services
COPY emulator ./emulator
COPY spark_jobs ./spark_jobs
COPY orchestration ./orchestration
RUN useradd --uid 10001 --create-home pipeline && mkdir -p /app/.state && chown pipeline /app/.state
USER 10001
CMD ["python", "-m", "services.provision"]

# The Confluent-compatible REST proxy (services/rest_proxy), listening on 0.0.0.0 at REST_PROXY_URL's port.
FROM project AS rest_proxy
EXPOSE 8082
CMD ["python", "-m", "services.rest_proxy"]
