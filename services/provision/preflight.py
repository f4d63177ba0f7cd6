"""Settings first: on the aws target, every value the selected provisioning steps need is checked before any AWS
call (in `--dry-run` too), and every problem is reported at once, one line each, naming the variable.

A value is a problem when the part needs it and it is *missing* (unset, so the local default would be used: the
local broker, the local REST proxy...) or *local* (set, but pointing at this machine, which AWS cannot reach).
Each step declares its checks with its `requires` target (services/provision/__main__.py); the checks shared by
every step are in `common`. Nothing here talks to the network.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from pipeline.settings import LOOPBACK_NAMES, WILDCARD_ADDRESSES, Settings
from services.provision.steps import Step, load

DEFAULT_USER_ID = "0a1b2c3d4e5f"
MSK_IAM_PORTS = {"9098", "9198"}  # MSK's IAM listeners (private, public); they accept only IAM clients


class PreflightError(SystemExit):
    """Settings the selected steps need are missing or local; the message lists each one."""


def is_local_address(value: str) -> bool:
    """A URL or a comma-separated `host:port` list that names this machine (loopback, a wildcard bind address,
    LocalStack)."""
    for item in (part.strip() for part in value.split(",")):
        host = (urlsplit(item if "//" in item else f"//{item}").hostname or "").lower()
        if host in LOOPBACK_NAMES or host in WILDCARD_ADDRESSES or host.startswith("127.") or "localstack" in host:
            return True
    return False


def need_remote(settings: Settings, field: str, what: str, example: str) -> list[str]:
    """`field` must be set explicitly and must not point at this machine."""
    variable = field.upper()
    value = getattr(settings, field)
    if field not in settings.model_fields_set:
        return [f"{variable} is not set (its default {value} is on this machine): set it to {what}, e.g. {example}"]
    if not value:
        return [f"{variable} is empty: set it to {what}, e.g. {example}"]
    if is_local_address(str(value)):
        return [f"{variable}={value} points at this machine, which AWS cannot reach: set it to {what}, e.g. {example}"]
    return []


def need_set(settings: Settings, field: str, what: str) -> list[str]:
    """`field` must have a value (it has no local default)."""
    if getattr(settings, field) in (None, ""):
        return [f"{field.upper()} is not set: set it to {what}"]
    return []


def common(settings: Settings) -> list[str]:
    """What every step on the aws target needs."""
    problems = []
    if "pipeline_user_id" not in settings.model_fields_set or settings.pipeline_user_id == DEFAULT_USER_ID:
        problems.append(
            f"PIPELINE_USER_ID is the example id {DEFAULT_USER_ID}: set your own 12 hex characters (bucket names "
            "are global on AWS, and every resource name derives from it)"
        )
    if "aws_region" not in settings.model_fields_set:
        problems.append(
            f"AWS_REGION is not set: set the account's region explicitly (the default is {settings.aws_region})"
        )
    return problems


def kafka_cluster(settings: Settings) -> list[str]:
    problems = need_remote(
        settings,
        "kafka_bootstrap_servers",
        "the MSK cluster's bootstrap string",
        "b-1.<cluster>.<id>.c2.kafka.<region>.amazonaws.com:9098 (with KAFKA_AUTH=iam)",
    )
    ports = {address.rpartition(":")[2] for address in settings.kafka_bootstrap_servers.split(",")}
    if not problems and ports & MSK_IAM_PORTS and settings.kafka_auth != "iam":
        problems.append(
            f"KAFKA_AUTH={settings.kafka_auth}, but KAFKA_BOOTSTRAP_SERVERS names MSK's IAM listener "
            f"(port {'/'.join(sorted(ports & MSK_IAM_PORTS))}): set KAFKA_AUTH=iam"
        )
    return problems


def connect_worker(settings: Settings) -> list[str]:
    if settings.connect_runner == "msk-connect":
        return []  # the connector step is skipped then: the msk-connect step registers the sink
    return need_remote(settings, "connect_url", "the Kafka Connect worker's REST API", "http://<ec2-client>:8083")


def rest_proxy(settings: Settings) -> list[str]:
    return need_remote(
        settings, "rest_proxy_url", "the Kafka REST proxy's address API Gateway calls", "http://<ec2-public-dns>:8082"
    )


def problems(settings: Settings, steps: list[Step]) -> list[str]:
    """Every problem of the settings for `steps` on the aws target (none on the local target), without duplicates."""
    if settings.pipeline_target != "aws":
        return []
    found = common(settings)
    for step in steps:
        if (requires := load(step.requires)) is not None:
            found += requires(settings)
    return list(dict.fromkeys(found))


def check(settings: Settings, steps: list[Step]) -> None:
    """Exit with every problem listed, before any step runs."""
    if found := problems(settings, steps):
        lines = "\n".join(f"  {line}" for line in found)
        raise PreflightError(
            f"PIPELINE_TARGET=aws: {len(found)} setting(s) to fix in .env before anything in the account is touched:\n{lines}"
        )
