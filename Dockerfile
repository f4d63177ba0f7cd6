# The project image: every service of the stack, installed by the same scripts as native mode (`scripts/setup.sh`,
# one step per layer) on debian:bookworm-slim, with the same pins. Each container of docker-compose.yml runs one
# service definition of services/<name>/service.py through `python -m services.runner run <name>`, exactly as
# supervisord runs it natively, so the two modes run the same components by construction.
#
# Base image: pulled where Docker Hub answers; made with debootstrap where it does not (scripts/docker_engine.sh).
# Extra CA certificates (a TLS-intercepting proxy on a corporate network): passed as the build secret `extra_ca`, a
# PEM bundle that scripts/compose_up.sh assembles from the DOCKER_EXTRA_CA_CERTS setting; never part of the repo.
# Downloads (uv, Maven, cargo, npm) go through BuildKit cache mounts, so a changed layer does not download again.
FROM debian:bookworm-slim AS project

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    UV_LINK_MODE=copy \
    UV_NATIVE_TLS=1 \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt \
    NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt \
    CARGO_HTTP_CAINFO=/etc/ssl/certs/ca-certificates.crt \
    PYTHON=python3.11 \
    INSTALL_DIR=/opt/pipeline

# What native mode expects on the machine (README's requirements): Python 3.11, a JDK 17, Maven, Node.js, and the
# tools the services' scripts use. ca-certificates-java puts the extra CAs into the JDK's trust store for Maven.
RUN --mount=type=secret,id=extra_ca \
    apt-get update -qq \
    && apt-get install -y -qq --no-install-recommends ca-certificates >/dev/null \
    && if [ -s /run/secrets/extra_ca ]; then \
         awk '/BEGIN CERTIFICATE/ {n++} n {print > ("/usr/local/share/ca-certificates/extra-" n ".crt")}' \
           /run/secrets/extra_ca && update-ca-certificates >/dev/null; \
       fi \
    && mkdir -p /usr/share/man/man1 \
    && apt-get install -y -qq --no-install-recommends \
         python3.11 python3.11-venv python3-pip openjdk-17-jdk-headless ca-certificates-java maven nodejs npm \
         curl procps tini make >/dev/null \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
# scripts/setup.sh steps, each with only the files it reads, so a code change rebuilds no dependency layer.
COPY scripts/setup.sh scripts/setup.sh
RUN scripts/setup.sh packages && rm -rf /var/lib/apt/lists/*
COPY requirements.lock pyproject.toml ./
RUN --mount=type=cache,target=/root/.cache/uv STATE_DIR=$INSTALL_DIR scripts/setup.sh venv
COPY services/rest_proxy/native services/rest_proxy/native
RUN --mount=type=cache,target=/root/.cache/uv --mount=type=cache,target=/root/.cargo/registry \
    STATE_DIR=$INSTALL_DIR scripts/setup.sh rest_proxy && rm -rf $INSTALL_DIR/cargo-target
COPY spark_jobs/fetch_jars.sh spark_jobs/pom.xml spark_jobs/
RUN --mount=type=cache,target=/root/.m2 STATE_DIR=$INSTALL_DIR scripts/setup.sh spark_jars
COPY services/kafka/fetch.sh services/kafka/pom.xml services/kafka/
COPY services/connect/pom.xml services/connect/
COPY services/s3_sink services/s3_sink
RUN --mount=type=cache,target=/root/.m2 STATE_DIR=$INSTALL_DIR scripts/setup.sh kafka
COPY services/s3/fetch.sh services/s3/
RUN --mount=type=cache,target=/root/.m2 STATE_DIR=$INSTALL_DIR scripts/setup.sh s3
COPY services/kinesis/install.sh services/kinesis/package.json services/kinesis/package-lock.json services/kinesis/
RUN --mount=type=cache,target=/root/.npm STATE_DIR=$INSTALL_DIR scripts/setup.sh kinesis
COPY services/localstack/install.sh services/localstack/
RUN --mount=type=cache,target=/root/.cache/uv STATE_DIR=$INSTALL_DIR scripts/setup.sh localstack
COPY services/airflow/setup.sh services/airflow/requirements.lock services/airflow/requirements.in services/airflow/
RUN --mount=type=cache,target=/root/.cache/uv STATE_DIR=$INSTALL_DIR scripts/setup.sh airflow
# setup.sh installs the repo editable into both venvs, but here that ran before the code was copied, so it found no
# package: put /app on their path instead (what the editable install does natively; spark-submit and Airflow's task
# processes drop PYTHONPATH).
RUN for venv in venv venvs/airflow; do \
      echo /app > "$("$INSTALL_DIR/$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')/app.pth"; \
    done

# The code, last. STATE_DIR (data, logs, the invoke URL, ...) is the stack's bind-mounted folder; the settings find
# the virtualenvs and jars installed above in INSTALL_DIR.
COPY . .
ENV STATE_DIR=/app/.state \
    PYTHONPATH=/app \
    PYSPARK_PYTHON=/opt/pipeline/venv/bin/python \
    PATH=/opt/pipeline/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["python", "-m", "services.runner", "status"]
