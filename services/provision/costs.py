"""What the aws target costs: rough list prices per resource, printed by `make provision ARGS=--dry-run`.

Prices are on-demand list prices in USD for us-east-1 as published on the AWS pricing pages (checked 2025; other
regions differ by roughly 10-30 %, and AWS changes them): a guide to what keeps costing money while it exists, not a
bill. `MONTH_HOURS` is AWS's own month (730 h). Free tiers and taxes are ignored. Each step's `costs` target
(services/provision/__main__.py) returns its lines; the helpers below format them the same way.
"""

from __future__ import annotations

from pipeline.settings import TABLES, Settings
from services.provision.steps import Step, load

MONTH_HOURS = 730
PRICES_AS_OF = "2025, us-east-1 list prices"
# USD
KINESIS_SHARD_HOUR = 0.015
KINESIS_PUT_UNITS_PER_MILLION = 0.014  # 25 KB payload units, provisioned mode
KINESIS_ON_DEMAND_STREAM_HOUR = 0.04
KINESIS_ON_DEMAND_INGEST_GB = 0.08
KINESIS_ON_DEMAND_RETRIEVAL_GB = 0.04
API_GATEWAY_REST_PER_MILLION = 3.50
S3_STANDARD_GB_MONTH = 0.023
S3_PUT_PER_THOUSAND = 0.005
MSK_BROKER_HOUR = {"kafka.t3.small": 0.0456, "kafka.m5.large": 0.21, "kafka.m7g.large": 0.204}
MSK_STORAGE_GB_MONTH = 0.10
MSK_SERVERLESS_CLUSTER_HOUR = 0.75
MSK_SERVERLESS_PARTITION_HOUR = 0.0015
MSK_CONNECT_MCU_HOUR = 0.11
EMR_SERVERLESS_VCPU_HOUR = 0.052624
EMR_SERVERLESS_GB_HOUR = 0.0057785
MWAA_ENVIRONMENT_HOUR = {"mw1.small": 0.49, "mw1.medium": 0.74, "mw1.large": 0.99}
MWAA_WORKER_HOUR = {"mw1.small": 0.055, "mw1.medium": 0.11, "mw1.large": 0.22}


def usd(amount: float) -> str:
    return f"${amount:,.2f}" if amount >= 0.1 else f"${amount:.4f}"


def always_on(what: str, hourly: float) -> str:
    """A resource billed by the hour while it exists, whether used or not."""
    return f"{what}: {usd(hourly)}/hour, about {usd(hourly * MONTH_HOURS)}/month while it exists"


def per_use(what: str, price: str) -> str:
    """A resource billed only for what it does or holds."""
    return f"{what}: {price} (no hourly charge)"


# --- the steps' cost lines ---------------------------------------------------------------------------------------
def bucket(settings: Settings) -> list[str]:
    return [
        per_use(
            f"S3 bucket {settings.bucket}",
            f"{usd(S3_STANDARD_GB_MONTH)}/GB-month stored, {usd(S3_PUT_PER_THOUSAND)}/1,000 PUTs (the sink writes "
            "one object per rotation)",
        )
    ]


def kinesis(settings: Settings) -> list[str]:
    streams = len(TABLES)
    if settings.kinesis_shards == 0:
        line = always_on(f"Kinesis: {streams} on-demand streams", streams * KINESIS_ON_DEMAND_STREAM_HOUR)
        extra = f"plus {usd(KINESIS_ON_DEMAND_INGEST_GB)}/GB in, {usd(KINESIS_ON_DEMAND_RETRIEVAL_GB)}/GB out"
    else:
        shards = streams * settings.kinesis_shards
        line = always_on(
            f"Kinesis: {streams} streams x {settings.kinesis_shards} provisioned shard(s) = {shards} shard(s)",
            shards * KINESIS_SHARD_HOUR,
        )
        extra = f"plus {usd(KINESIS_PUT_UNITS_PER_MILLION)}/million PUT payload units"
    return [f"{line}; {extra}"]


def api_gateway(settings: Settings) -> list[str]:
    return [
        per_use(f"API Gateway REST API {settings.api_name}", f"{usd(API_GATEWAY_REST_PER_MILLION)}/million requests")
    ]


def msk_cluster(settings: Settings) -> list[str]:
    """The MSK cluster is the user's (provisioning creates topics on it, not the cluster), but it is the largest
    always-on cost of the pipeline, so the plan names it."""
    brokers = ", ".join(f"{kind} {usd(price)}" for kind, price in MSK_BROKER_HOUR.items())
    return [
        f"MSK cluster at KAFKA_BOOTSTRAP_SERVERS (yours, not created here): per broker-hour {brokers}, about "
        f"{usd(2 * MSK_BROKER_HOUR['kafka.m5.large'] * MONTH_HOURS)}/month for 2 kafka.m5.large brokers, plus "
        f"{usd(MSK_STORAGE_GB_MONTH)}/GB-month of storage; MSK Serverless "
        f"{usd(MSK_SERVERLESS_CLUSTER_HOUR)}/cluster-hour + {usd(MSK_SERVERLESS_PARTITION_HOUR)}/partition-hour "
        f"({len(TABLES) * settings.kafka_partitions} partitions for these topics)"
    ]


def msk_connect(mcu_count: int, workers: int) -> list[str]:
    """An MSK Connect connector: billed per MCU-hour for each worker while it runs."""
    mcus = mcu_count * workers
    return [always_on(f"MSK Connect connector: {workers} worker(s) x {mcu_count} MCU", mcus * MSK_CONNECT_MCU_HOUR)]


def emr_serverless(vcpus: float, memory_gb: float, hours_per_run: float, runs_per_month: int) -> list[str]:
    """An EMR Serverless application: billed per vCPU-hour and GB-hour of the workers a job run uses (nothing
    while no job runs and no capacity is pre-initialized)."""
    run = vcpus * EMR_SERVERLESS_VCPU_HOUR * hours_per_run + memory_gb * EMR_SERVERLESS_GB_HOUR * hours_per_run
    return [
        per_use(
            "EMR Serverless application",
            f"{usd(EMR_SERVERLESS_VCPU_HOUR)}/vCPU-hour + {usd(EMR_SERVERLESS_GB_HOUR)}/GB-hour; a run of "
            f"{vcpus:g} vCPU and {memory_gb:g} GB for {hours_per_run:g} h is about {usd(run)}, "
            f"{usd(run * runs_per_month)}/month at {runs_per_month} run(s)",
        )
    ]


def mwaa(environment_class: str, extra_workers: int = 0) -> list[str]:
    """An MWAA environment: billed per hour while it exists, plus each worker above the first."""
    if environment_class not in MWAA_ENVIRONMENT_HOUR:
        return [f"MWAA environment ({environment_class}): no price on file; see the MWAA pricing page"]
    hourly = MWAA_ENVIRONMENT_HOUR[environment_class] + extra_workers * MWAA_WORKER_HOUR[environment_class]
    return [always_on(f"MWAA environment ({environment_class}, {extra_workers} extra worker(s))", hourly)]


def report(settings: Settings, steps: list[Step]) -> None:
    """Print the cost lines of `steps` (the aws target only: LocalStack costs nothing)."""
    if settings.pipeline_target != "aws":
        return
    print(f"what this costs on AWS (rough, {PRICES_AS_OF}; see each service's pricing page):")
    for step in steps:
        if (costs := load(step.costs)) is not None:
            for line in costs(settings):
                print(f"  [{step.name}] {line}")
