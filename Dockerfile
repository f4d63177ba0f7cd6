# syntax=docker/dockerfile:1
# The project image (Python 3.11 + requirements.lock + the pipeline's code), for docker-compose.yml: the REST proxy,
# the one-shot seed and provision services and the emulator run from it, each with its own command. Build context:
# the repository root. Native mode does not use this file; it runs the same modules from .state/venv.

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
