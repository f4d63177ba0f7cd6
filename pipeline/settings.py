"""The one place for every endpoint, port and resource name of the pipeline.

Everything is read from the environment and `.env` (pydantic-settings). `PIPELINE_TARGET=local` (default) points
at the native/docker stack on 127.0.0.1; `PIPELINE_TARGET=aws` drops every local endpoint so boto3 and the Kafka
clients resolve real AWS endpoints from the region and the usual AWS environment.

Names derived from the user id (topics, bucket, streams, Delta tables, DAG id, AWS resource names) are properties
here and nowhere else, so a reader finds the whole naming contract (docs/contract.md) in one file; where objects go
inside the bucket is `pipeline/layout.py`. Services' ports come from their URLs here too, with one default each.
"""

from __future__ import annotations

import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import quote_plus, urlsplit

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from pipeline import layout

REPO_ROOT = Path(__file__).resolve().parent.parent
TABLES = ("pin", "geo", "user")
SOURCE_TABLES = {"pin": "pinterest_data", "geo": "geolocation_data", "user": "user_data"}
# Each source table's key column, the same value for a post's three rows (the cleaned tables call it `ind`).
KEY_COLUMNS = {"pin": "index", "geo": "ind", "user": "ind"}
USER_ID_PATTERN = re.compile(r"^[0-9a-f]{12}$")
DATABASE_NAME_PATTERN = re.compile(r"^[A-Za-z0-9_]{1,64}$")
LOCAL_HOST = "127.0.0.1"
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")
WILDCARD_ADDRESSES = ("0.0.0.0", "::")  # a bind address, not a name a client uses
ENDPOINT_FIELDS = ("aws_endpoint_url", "aws_endpoint_url_s3", "aws_endpoint_url_kinesis")
# What unset settings become on the aws target (an explicit value wins).
AWS_DEFAULTS: dict[str, object] = {
    **dict.fromkeys(ENDPOINT_FIELDS),
    "api_key_required": True,
    "api_surface": "emulator",
}
# Tags of every AWS resource provisioning creates (`Settings.resource_tags`).
PROJECT_TAG, PROJECT_TAG_VALUE, USER_TAG = "project", "pinterest-pipeline", "pipeline-user-id"
# Each local service's port when its URL names none.
REST_PROXY_PORT = 8082
CONNECT_PORT = 8083
LOCALSTACK_PORT = 4566
KINESIS_PORT = 4567
S3_STORE_PORT = 9000


# Each deadline of the ingestion chain leaves its caller this much time to read the answer.
DEADLINE_MARGIN_MS = 2000


class Settings(BaseSettings):
    """Typed pipeline configuration. Field names are the environment variable names (case-insensitive)."""

    model_config = SettingsConfigDict(
        env_file=os.environ.get("PIPELINE_ENV_FILE", str(REPO_ROOT / ".env")),
        env_file_encoding="utf-8",
        extra="ignore",
        validate_default=True,
        env_ignore_empty=True,
    )

    pipeline_target: Literal["local", "aws"] = "local"
    pipeline_user_id: str = "0a1b2c3d4e5f"
    state_dir: Path = REPO_ROOT / ".state"
    # Where `make setup` put the virtualenvs and jars; empty: the state folder. The Docker image installs them apart
    # from its state volume (INSTALL_DIR=/opt/pipeline), and the host's tests of a Docker stack use the host's.
    install_dir: Path | None = None
    bind_host: str = LOCAL_HOST

    # MySQL source (MariaDB natively, RDS on AWS)
    mysql_host: str = LOCAL_HOST
    mysql_port: int = Field(3306, ge=1, le=65535)
    mysql_user: str = "pinterest"
    mysql_password: str = "pinterest"
    mysql_database: str = "pinterest_data"
    mysql_connect_timeout: int = Field(5, ge=1, le=60)
    # The account the local MariaDB server runs as when the stack is started as root (it never runs as root).
    mysql_server_user: str = "mysql"

    # Kafka (KRaft natively, MSK on AWS)
    kafka_bootstrap_servers: str = f"{LOCAL_HOST}:9092"
    kafka_controller_port: int = Field(9093, ge=1, le=65535)
    kafka_partitions: int = Field(3, ge=1, le=1000)
    kafka_auth: Literal["plaintext", "iam"] = "plaintext"
    # The local broker's retention (broker defaults for every topic; MSK keeps its cluster configuration): a
    # partition's log is trimmed by age and by size, whichever comes first, one whole segment at a time, so a
    # segment must be well below the size cap. -1 means no size cap.
    kafka_retention_hours: int = Field(168, ge=1)
    kafka_retention_bytes: int = Field(1024**3, ge=-1)
    kafka_segment_bytes: int = Field(128 * 1024**2, ge=1024**2, le=1024**3)
    rest_proxy_url: str = f"http://{LOCAL_HOST}:{REST_PROXY_PORT}"
    # REST proxy producer: largest record accepted (bigger ones get 413), batching delay, delivery deadline.
    rest_proxy_max_record_bytes: int = Field(1_000_000, ge=1024, le=16_000_000)
    rest_proxy_linger_ms: int = Field(2, ge=0, le=1000)
    rest_proxy_delivery_timeout_ms: int = Field(20_000, ge=1000, le=600_000)
    # REST proxy limits (docs/design/rest_proxy.md): records in one produce request (more: 422, 42208), bytes of
    # requests held at once (more: 429 with Retry-After), threads for consumer calls (long polls wait for one).
    rest_proxy_max_records_per_request: int = Field(10_000, ge=1, le=1_000_000)
    rest_proxy_max_in_flight_bytes: int = Field(256 * 1024 * 1024, ge=1024 * 1024, le=16 * 1024**3)
    rest_proxy_consumer_threads: int = Field(4, ge=1, le=64)
    # Host names the REST proxy answers (Host header, and Origin of a browser's request); empty: the host of
    # REST_PROXY_URL, the bind host, loopback names and the compose service name (`rest_proxy_allowed_host_names`).
    rest_proxy_allowed_hosts: list[str] = []
    connect_url: str = f"http://{LOCAL_HOST}:{CONNECT_PORT}"
    # S3 sink rotation: an object is written at this many records or bytes, or when its first record is this old.
    # The byte bound keeps each partition's buffer in the Connect worker's heap bounded whatever the record size.
    s3_sink_flush_size: int = Field(5000, ge=1, le=1_000_000)
    s3_sink_flush_bytes: int = Field(16 * 1024**2, ge=1024, le=1024**3)
    s3_sink_rotate_interval_ms: int = Field(3000, ge=100, le=3_600_000)

    # AWS (LocalStack natively). None means "let boto3 resolve the real AWS endpoint".
    aws_region: str = "us-east-1"
    aws_endpoint_url: str | None = f"http://{LOCAL_HOST}:{LOCALSTACK_PORT}"
    # S3 is served by a durable S3-compatible store natively (LocalStack's open-source S3 forgets on restart).
    aws_endpoint_url_s3: str | None = f"http://{LOCAL_HOST}:{S3_STORE_PORT}"
    # Kinesis natively is the stack's durable Kinesis store (kinesalite, services/kinesis) on its own port, called
    # directly: the same streams that API Gateway writes to through LocalStack, which forwards Kinesis calls to this
    # store (services/localstack/site/sitecustomize.py).
    aws_endpoint_url_kinesis: str | None = f"http://{LOCAL_HOST}:{KINESIS_PORT}"
    aws_access_key_id: str | None = None
    aws_secret_access_key: str | None = None

    # API Gateway invoke URL; when empty, the URL written by provisioning (state/api_invoke_url) is used.
    api_invoke_url: str | None = None
    api_key: str | None = None
    # Methods require `x-api-key` (usage plan + key); the key is API_KEY, else the one provisioning stored. Unset:
    # false locally, true on the aws target (`_aws_target_defaults`).
    api_key_required: bool = False
    # What the gateway exposes: `emulator` only the routes the emulator posts to (produce to the three topics,
    # PutRecord/PutRecords on the streams); `full` also the rest of the REST proxy's API (`/{proxy+}`) and the
    # Kinesis list/describe/create/delete routes. Unset: full locally (the integration tests use it), emulator on aws.
    api_surface: Literal["emulator", "full"] = "full"
    api_stage: str = Field("prod", pattern=r"^[A-Za-z0-9_]{1,128}$")
    # The chain's three deadlines, in increasing order, so an answer is definitive before its caller gives up: the REST
    # proxy's delivery timeout (above) < API Gateway's integration timeout (AWS's default and REST APIs' usual cap
    # is 29 s) < the emulator's HTTP timeout. docs/design/ledger.md explains why.
    gateway_timeout_ms: int = Field(29_000, ge=50, le=300_000)
    emulator_timeout_s: float = Field(35.0, gt=0, le=600)
    # Shards per Kinesis stream; 0 means on-demand capacity mode.
    kinesis_shards: int = Field(2, ge=0, le=500)
    # The streaming job's Kinesis source: record data per shard in one micro-batch, which also bounds what its
    # driver buffers ahead (about two batches and one GetRecords answer per shard).
    stream_max_bytes_per_shard_per_batch: int = Field(8 * 1024**2, ge=1024**2, le=1024**3)

    airflow_port: int = Field(8080, ge=1, le=65535)
    # Airflow login (SimpleAuthManager). No published default password: set AIRFLOW_ADMIN_PASSWORD in .env, or the
    # first `make up` generates one into state/airflow/admin_password and prints where it is.
    airflow_admin_user: str = "admin"
    airflow_admin_password: str | None = None
    airflow_retries: int = Field(2, ge=0, le=10)
    airflow_retry_delay_seconds: int = Field(300, ge=1)
    airflow_sensor_timeout_seconds: int = Field(6 * 3600, ge=1)
    airflow_sensor_poke_seconds: int = Field(60, ge=1)
    # The Spark venv's spark-submit (Airflow has its own venv); empty means state/venv/bin/spark-submit.
    spark_submit: str | None = None
    # aws runners (issue 18 items 2, 3, 7): where the jobs run on the aws target, and where the DAG is deployed.
    # The batch DAG submits the job package `make provision` uploaded (services/provision/jobs.py) to this runner.
    batch_runner: Literal["emr-serverless", "databricks"] = "emr-serverless"
    # EMR Serverless: the application provisioning creates (or reuses, found by name) with this release; the job
    # runs with the execution role (created by services/provision/iam.py or given here).
    emr_serverless_release: str = "emr-spark-8.0.0"
    emr_serverless_application_id: str | None = None
    emr_serverless_execution_role_arn: str | None = None
    # The runner's Python (minor version) the job's third-party packages are built for.
    job_python_version: str = Field("3.11", pattern=r"^3\.\d{1,2}$")
    # Who puts hadoop-aws and Delta on Spark's class path: the project (local mode, spark_jobs/fetch_jars.sh) or
    # the cluster (EMR Serverless, Databricks: the job package's entry sets `cluster`).
    spark_jars: Literal["project", "cluster"] = "project"
    # Databricks: the run goes through this Airflow connection to an existing cluster.
    databricks_conn_id: str = "databricks_default"
    databricks_cluster_id: str | None = None
    # MWAA (`make deploy-dag`): the environment's bucket and the folder of its DAGs; the Airflow version it runs
    # (its constraints file goes into the uploaded requirements).
    mwaa_bucket: str | None = None
    mwaa_dags_prefix: str = "dags"
    mwaa_requirements_key: str = "requirements.txt"
    mwaa_airflow_version: str = "3.0.6"
    mwaa_python_version: str = "3.12"

    @property
    def emr_serverless_application_name(self) -> str:
        """The EMR Serverless application provisioning creates or reuses (found by this name)."""
        return f"{self.pipeline_user_id}-spark"

    # end of the aws runners block
    # Growth bounds kept by the maintenance DAG (local target; on AWS: see docs/design/s3-and-localstack.md).
    # VACUUM of the streaming job's Delta tables keeps files any version this recent references (Delta's default).
    delta_vacuum_retain_hours: int = Field(168, ge=1)
    # The sink's objects under topics/ are deleted this many days after they were written (the newest object of each
    # partition is kept: the sink resumes from it). The batch job's results cover what is kept. 0 keeps everything.
    s3_topics_retention_days: int = Field(90, ge=0)
    # Airflow's task and DAG-processor logs are deleted this many days after their last write.
    airflow_log_retention_days: int = Field(30, ge=1)
    # The console (services/console): a read-only web page of the running pipeline, on the bind host.
    console_port: int = Field(8070, ge=1, le=65535)
    # Host names the console answers (Host header, and Origin of a browser's request); empty: the bind host,
    # loopback names and the compose service name (`console_allowed_host_names`).
    console_allowed_hosts: list[str] = []
    spark_ui_port: int = Field(4040, ge=1, le=65535)
    # The Spark cluster: empty runs jobs in local[*] (native mode's default); Docker mode sets the standalone master
    # spark://127.0.0.1:<spark_master_port> that its spark-master and spark-worker containers run.
    spark_master: str | None = None
    spark_master_port: int = Field(7077, ge=1, le=65535)
    spark_master_ui_port: int = Field(8081, ge=1, le=65535)
    spark_worker_ui_port: int = Field(8091, ge=1, le=65535)

    # MSK Connect and IAM (issue 18 items 4, 5) ---------------------------------------------------------------------
    # The MSK cluster, arn:aws:kafka:<region>:<account>:cluster/<name>/<uuid>: the IAM policies name its topics and
    # groups, and an MSK Connect connector joins its VPC (subnets and security groups, unless set below).
    msk_cluster_arn: str | None = Field(None, pattern=r"^arn:[a-z-]+:kafka:[a-z0-9-]+:\d{12}:cluster/[^/]+/[^/]+$")
    # Who runs the S3 sink: a Kafka Connect worker at CONNECT_URL (the local stack, or one on the EC2 client), or MSK
    # Connect (provisioning uploads the plugin and creates the connector: services/provision/msk_connect.py).
    connect_runner: Literal["worker", "msk-connect"] = "worker"
    msk_connect_subnets: list[str] = []
    msk_connect_security_groups: list[str] = []
    # Provisioned capacity: MSK Connect units per worker (1 MCU = 1 vCPU, 4 GiB) and workers.
    msk_connect_mcu_count: Literal[1, 2, 4, 8] = 1
    msk_connect_workers: int = Field(1, ge=1, le=10)
    # An existing CloudWatch log group for the connector's worker logs; empty: no log delivery.
    msk_connect_log_group: str | None = None
    # The MWAA environment the execution role `<id>-mwaa` is for (its logs and metrics); the role is made only when
    # it and MWAA_BUCKET (the aws runners' block, `make deploy-dag`) are set.
    mwaa_environment_name: str | None = Field(None, pattern=r"^[A-Za-z][0-9A-Za-z_-]{0,79}$")
    # Replication factor of the Connect worker's internal topics: 1 on the local single broker; -1 takes the
    # cluster's default.replication.factor (MSK: 3 on a three-AZ cluster).
    kafka_replication_factor: int = Field(1, ge=-1, le=16)

    @field_validator("kafka_replication_factor")
    @classmethod
    def _check_replication_factor(cls, value: int) -> int:
        if value == 0:
            raise ValueError("must be a replica count (1, 3, ...) or -1 for the cluster's default, not 0")
        return value

    @property
    def connect_worker_group(self) -> str:
        """The self-managed Connect worker's group; on a (shared) MSK cluster it carries the user id."""
        return "pipeline-connect" if self.pipeline_target == "local" else f"{self.pipeline_user_id}-connect"

    def connect_storage_topic(self, kind: str) -> str:
        """The worker's internal topic `kind` (configs, offsets, status); with the user id on AWS, as above."""
        return f"_connect-{kind}" if self.pipeline_target == "local" else f"_connect-{self.pipeline_user_id}-{kind}"

    @property
    def msk_connect_plugin_prefix(self) -> str:
        """MSK Connect custom plugins are immutable: one per plugin content, `<id>-s3-sink-<content hash>`."""
        return f"{self.pipeline_user_id}-s3-sink-"

    def iam_name(self, part: str) -> str:
        """The name of the IAM role (and its inline policy, instance profile) of one part of the pipeline."""
        return f"{self.pipeline_user_id}-{part}"

    @field_validator("pipeline_user_id")
    @classmethod
    def _check_user_id(cls, value: str) -> str:
        if not USER_ID_PATTERN.match(value):
            raise ValueError(f"must be 12 lowercase hex characters (e.g. 0a1b2c3d4e5f), got {value!r}")
        return value

    @field_validator("mysql_database")
    @classmethod
    def _check_database_name(cls, value: str) -> str:
        # The name goes into SQL (CREATE DATABASE `name`, GRANT ... ON `name`.*): only what MySQL allows unquoted.
        if not DATABASE_NAME_PATTERN.match(value):
            raise ValueError(f"must be 1-64 letters, digits or underscores (a MySQL database name), got {value!r}")
        return value

    @field_validator(*ENDPOINT_FIELDS, "api_invoke_url", "api_key", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @model_validator(mode="after")
    def _deadlines_in_order(self) -> Settings:
        delivery, gateway, client = (
            self.rest_proxy_delivery_timeout_ms,
            self.gateway_timeout_ms,
            self.emulator_timeout_s * 1000,
        )
        if not delivery + DEADLINE_MARGIN_MS <= gateway <= client - DEADLINE_MARGIN_MS:
            raise ValueError(
                f"deadlines out of order: REST_PROXY_DELIVERY_TIMEOUT_MS={delivery} + {DEADLINE_MARGIN_MS} must be "
                f"<= GATEWAY_TIMEOUT_MS={gateway} <= EMULATOR_TIMEOUT_S*1000={client:.0f} - {DEADLINE_MARGIN_MS}, so "
                "every answer is definitive before its caller gives up (else a retry can write a record twice)"
            )
        return self

    @model_validator(mode="after")
    def _kafka_segment_fits_the_size_cap(self) -> Settings:
        # The active segment is never deleted: a cap below one segment would keep up to two segments per partition.
        if 0 <= self.kafka_retention_bytes < self.kafka_segment_bytes:
            raise ValueError(
                f"KAFKA_RETENTION_BYTES={self.kafka_retention_bytes} is below KAFKA_SEGMENT_BYTES="
                f"{self.kafka_segment_bytes}: Kafka deletes whole segments, so lower the segment size too"
            )
        return self

    @model_validator(mode="after")
    def _sink_objects_outlive_kafka_retention(self) -> Settings:
        # Objects pruned while Kafka still has their records would be reported missing by the audit.
        if self.s3_topics_retention_days and self.s3_topics_retention_days * 24 < self.kafka_retention_hours:
            raise ValueError(
                f"S3_TOPICS_RETENTION_DAYS={self.s3_topics_retention_days} is shorter than KAFKA_RETENTION_HOURS="
                f"{self.kafka_retention_hours}: keep the sink's objects at least as long as Kafka keeps the records"
            )
        return self

    @model_validator(mode="after")
    def _aws_target_defaults(self) -> Settings:
        """On the aws target, unset values take their account defaults: no local endpoint, an API key, only the
        emulator's routes on the gateway."""
        if self.pipeline_target == "aws":
            fields_set = self.model_fields_set
            for name, value in AWS_DEFAULTS.items():
                if name not in fields_set:
                    setattr(self, name, value)
        return self

    @model_validator(mode="after")
    def _aws_target_has_no_local_endpoint(self) -> Settings:
        # The local default was dropped above; an explicit value (e.g. a VPC endpoint) may stay, unless it is local.
        if self.pipeline_target == "aws":
            local = [
                f"{name.upper()}={value} points at this machine, but PIPELINE_TARGET=aws (leave it empty)"
                for name in ENDPOINT_FIELDS
                if (value := getattr(self, name)) and is_local_url(value)
            ]
            if local:
                raise ValueError("\n".join(local))
        return self

    # --- derived names (docs/contract.md) ----------------------------------------------------------------------
    def topic(self, table: str) -> str:
        return f"{self.pipeline_user_id}.{_check_table(table)}"

    @property
    def topics(self) -> list[str]:
        return [self.topic(t) for t in TABLES]

    @property
    def stream_prefix(self) -> str:
        return f"streaming-{self.pipeline_user_id}-"

    def stream(self, table: str) -> str:
        return f"{self.stream_prefix}{_check_table(table)}"

    @property
    def streams(self) -> list[str]:
        return [self.stream(t) for t in TABLES]

    @property
    def bucket(self) -> str:
        return f"user-{self.pipeline_user_id}-bucket"

    def delta_table(self, table: str) -> str:
        return f"{self.pipeline_user_id}_{_check_table(table)}_table"

    @property
    def delta_tables(self) -> list[str]:
        return [self.delta_table(t) for t in TABLES]

    @property
    def stream_quarantine_table(self) -> str:
        return f"{self.pipeline_user_id}_stream_quarantine_table"

    @property
    def dag_id(self) -> str:
        return f"{self.pipeline_user_id}_dag"

    @property
    def maintenance_dag_id(self) -> str:
        return f"{self.pipeline_user_id}_maintenance_dag"

    @property
    def connector_name(self) -> str:
        return f"{self.pipeline_user_id}-s3-sink"

    @property
    def api_name(self) -> str:
        return f"{self.pipeline_user_id}-pinterest-api"

    @property
    def resource_tags(self) -> dict[str, str]:
        """Tags on every AWS resource provisioning creates (where AWS supports tags); teardown deletes only resources
        with these tags and one of the project's names."""
        return {PROJECT_TAG: PROJECT_TAG_VALUE, USER_TAG: self.pipeline_user_id}

    @property
    def role_name(self) -> str:
        """API Gateway's execution role (it writes to Kinesis)."""
        return f"{self.pipeline_user_id}-kinesis-access-role"

    @property
    def usage_plan_name(self) -> str:
        return f"{self.pipeline_user_id}-pinterest-usage-plan"

    @property
    def api_key_name(self) -> str:
        return f"{self.pipeline_user_id}-pinterest-api-key"

    def streams_arn(self, partition: str, account: str) -> str:
        """The IAM resource matching every stream of this user (`streaming-<id>-*`) in the region."""
        return f"arn:{partition}:kinesis:{self.aws_region}:{account}:stream/{self.stream_prefix}*"

    # --- locations in the bucket (pipeline/layout.py) -----------------------------------------------------------
    @property
    def bucket_uri(self) -> str:
        """The bucket as Spark reads it; the batch job's default input (it holds `topics/`)."""
        return layout.s3a_uri(self.bucket)

    @property
    def results_uri(self) -> str:
        """The batch job's default results root."""
        return layout.batch_job_paths(self.bucket_uri)["results"]

    @property
    def warehouse_uri(self) -> str:
        """The streaming job's default root of its Delta tables."""
        return layout.s3a_uri(self.bucket, layout.DELTA_DIR)

    # --- endpoints ---------------------------------------------------------------------------------------------
    @property
    def s3_endpoint_url(self) -> str | None:
        return self.aws_endpoint_url_s3 or self.aws_endpoint_url

    @property
    def kinesis_endpoint_url(self) -> str | None:
        return self.aws_endpoint_url_kinesis or self.aws_endpoint_url

    @property
    def rest_proxy_port(self) -> int:
        return _port(self.rest_proxy_url, REST_PROXY_PORT)

    @property
    def rest_proxy_allowed_host_names(self) -> list[str]:
        """REST_PROXY_ALLOWED_HOSTS, or by default the names the stack reaches the proxy by: the host of
        REST_PROXY_URL (API Gateway's integration calls it there), the bind host, loopback, and docker-compose.yml's
        service name with either separator (Docker mode uses the host's network, but a bridge network would not)."""
        default = [urlsplit(self.rest_proxy_url).hostname or "", self.bind_host, "rest_proxy", "rest-proxy"]
        return _host_names(self.rest_proxy_allowed_hosts, default)

    @property
    def console_allowed_host_names(self) -> list[str]:
        """CONSOLE_ALLOWED_HOSTS, or the bind host, loopback names and docker-compose.yml's service name."""
        return _host_names(self.console_allowed_hosts, [self.bind_host, "console"])

    @property
    def console_url(self) -> str:
        host = "127.0.0.1" if self.bind_host in WILDCARD_ADDRESSES else self.bind_host
        return f"http://{'[' + host + ']' if ':' in host else host}:{self.console_port}"

    @property
    def kafka_bootstrap_address(self) -> tuple[str, int]:
        """Host and port of the first bootstrap server, which is also the local broker's listener."""
        host, _, port = self.kafka_bootstrap_servers.split(",")[0].strip().rpartition(":")
        return host or self.bind_host, int(port)

    @property
    def connect_address(self) -> tuple[str, int]:
        """Host and port of Kafka Connect's REST API."""
        return urlsplit(self.connect_url).hostname or self.bind_host, _port(self.connect_url, CONNECT_PORT)

    @property
    def localstack_port(self) -> int:
        return _port(self.aws_endpoint_url, LOCALSTACK_PORT)

    @property
    def localstack_url(self) -> str:
        """LocalStack's own endpoint, also on the aws target (where the endpoint settings are unset)."""
        return self.aws_endpoint_url or f"http://{self.bind_host}:{LOCALSTACK_PORT}"

    @property
    def kinesis_port(self) -> int:
        """The Kinesis store's port (services/kinesis), from `AWS_ENDPOINT_URL_KINESIS`."""
        return _port(self.aws_endpoint_url_kinesis, KINESIS_PORT)

    @property
    def kinesis_url(self) -> str:
        return self.kinesis_endpoint_url or f"http://{self.bind_host}:{KINESIS_PORT}"

    @property
    def s3_store_port(self) -> int:
        return _port(self.aws_endpoint_url_s3, S3_STORE_PORT)

    @property
    def s3_store_url(self) -> str:
        return self.aws_endpoint_url_s3 or f"http://{self.bind_host}:{S3_STORE_PORT}"

    @property
    def mysql_address(self) -> str:
        return f"{self.mysql_host}:{self.mysql_port}"

    @property
    def mysql_url(self) -> str:
        return (
            f"mysql+pymysql://{quote_plus(self.mysql_user)}:{quote_plus(self.mysql_password)}@{self.mysql_host}:"
            f"{self.mysql_port}/{self.mysql_database}?charset=utf8mb4"
        )

    @property
    def invoke_url_file(self) -> Path:
        return self.state_dir / "api_invoke_url"

    @property
    def airflow_log_dir(self) -> Path:
        """Airflow's `base_log_folder` (task and DAG-processor logs), which the maintenance DAG prunes."""
        return self.state_dir / "airflow" / "logs"

    @property
    def airflow_password_file(self) -> Path:
        return self.state_dir / "airflow" / "admin_password"

    def resolved_airflow_admin_password(self) -> str | None:
        """The Airflow login password: the setting, else the one generated on first start, else None."""
        if self.airflow_admin_password:
            return self.airflow_admin_password
        if self.airflow_password_file.exists():
            return self.airflow_password_file.read_text().strip() or None
        return None

    def resolved_invoke_url(self) -> str | None:
        """The API Gateway invoke URL: the setting, else what provisioning stored, else None."""
        if self.api_invoke_url:
            return self.api_invoke_url.rstrip("/")
        if self.invoke_url_file.exists():
            stored = self.invoke_url_file.read_text().strip()
            return stored.rstrip("/") or None
        return None

    @property
    def api_key_file(self) -> Path:
        return self.state_dir / "api_key"

    def resolved_api_key(self) -> str | None:
        """The API key to send as `x-api-key`: the setting, else what provisioning stored, else None."""
        if self.api_key:
            return self.api_key
        if self.api_key_file.exists():
            return self.api_key_file.read_text().strip() or None
        return None

    # --- state folder layout -----------------------------------------------------------------------------------
    @property
    def tools_dir(self) -> Path:
        """The virtualenvs (venv, venvs/<name>) and downloaded jars (jars/<name>)."""
        return self.install_dir or self.state_dir

    @property
    def data_dir(self) -> Path:
        return self.state_dir / "data"

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def run_dir(self) -> Path:
        return self.state_dir / "run"

    @property
    def stream_status_file(self) -> Path:
        """Progress of the streaming job's queries, rewritten every few seconds (its readiness probe reads it)."""
        return self.run_dir / "stream-status.json"

    def boto3_client_kwargs(self, service: str) -> dict[str, str]:
        """Keyword arguments for `boto3.client(service, ...)`: region always, endpoint only when one is set."""
        kwargs = {"region_name": self.aws_region}
        endpoint = {"s3": self.s3_endpoint_url, "kinesis": self.kinesis_endpoint_url}.get(
            service, self.aws_endpoint_url
        )
        if endpoint:
            kwargs["endpoint_url"] = endpoint
        if self.aws_access_key_id and self.aws_secret_access_key:
            kwargs["aws_access_key_id"] = self.aws_access_key_id
            kwargs["aws_secret_access_key"] = self.aws_secret_access_key
        elif self.pipeline_target == "local":
            # LocalStack accepts any credentials; fixed ones keep a user's real AWS profile out of local runs.
            kwargs["aws_access_key_id"] = "test"
            kwargs["aws_secret_access_key"] = "test"
        return kwargs


def _check_table(table: str) -> str:
    if table not in TABLES:
        raise ValueError(f"unknown table {table!r}; expected one of {', '.join(TABLES)}")
    return table


def _host_names(explicit: list[str], default: list[str]) -> list[str]:
    """An HTTP service's allowed host names: the explicit list, or `default` plus the loopback names (never a
    wildcard bind address, which no client uses as a name)."""
    if explicit:
        return list(explicit)
    names = [*default, *LOOPBACK_NAMES]
    return list(dict.fromkeys(name for name in names if name and name not in WILDCARD_ADDRESSES))


def _port(url: str | None, default: int) -> int:
    return (urlsplit(url).port if url else None) or default


def is_local_url(url: str) -> bool:
    return bool(re.search(r"//(localhost|127\.|\[::1\]|[^/]*localstack)", url))


class SettingsError(SystemExit):
    """Raised (as a clean exit) when the configuration is invalid; the message names every bad variable."""


def format_validation_error(error: ValidationError) -> str:
    lines = ["Invalid pipeline settings (check your environment and .env):"]
    for item in error.errors():
        variable = ".".join(str(part) for part in item["loc"]).upper()
        # A model-level check names its variables itself, one problem a line.
        lines += [
            f"  {variable}: {msg}" if variable else f"  {msg}"
            for msg in item["msg"].removeprefix("Value error, ").splitlines()
        ]
    return "\n".join(lines)


def load_settings(**overrides: object) -> Settings:
    """Build settings, turning a validation error into a readable exit before any work starts."""
    try:
        return Settings(**overrides)
    except ValidationError as error:
        raise SettingsError(format_validation_error(error)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
