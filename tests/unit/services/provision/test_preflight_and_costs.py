"""Settings first: with PIPELINE_TARGET=aws, `make provision` (dry run included) lists every missing or local value
the selected steps need, one line each, before any step runs; the dry run ends with rough prices. Locally nothing
of this applies."""

from __future__ import annotations

import os

import pytest

from pipeline.settings import SettingsError, load_settings
from services.provision import costs, preflight
from services.provision.__main__ import main as provision

COMPLETE_AWS = {
    "pipeline_target": "aws",
    "pipeline_user_id": "7e57c0de0001",
    "aws_region": "eu-west-1",
    "kafka_bootstrap_servers": "b-1.c.abc.c2.kafka.eu-west-1.amazonaws.com:9098",
    "kafka_auth": "iam",
    "msk_cluster_arn": "arn:aws:kafka:eu-west-1:123456789012:cluster/pipeline/0f1e2d3c-aaaa-bbbb-cccc-1234567890ab-2",
    "connect_url": "http://ip-10-0-1-23.eu-west-1.compute.internal:8083",
    "rest_proxy_url": "http://ec2-203-0-113-10.eu-west-1.compute.amazonaws.com:8082",
}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch):
    for name in list(os.environ):
        if name.startswith(("AWS_", "PIPELINE_", "REST_PROXY", "API_", "KINESIS_", "KAFKA_", "CONNECT_", "MSK_")):
            monkeypatch.delenv(name)


def aws(**overrides):
    return load_settings(_env_file=None, **{**COMPLETE_AWS, **overrides})


@pytest.mark.parametrize("args", [["--dry-run"], []])
def test_a_bare_aws_target_gets_every_problem_at_once_even_in_the_dry_run(capsys, args):
    settings = load_settings(pipeline_target="aws", _env_file=None)
    with pytest.raises(preflight.PreflightError) as raised:
        provision(args, settings=settings)
    message = str(raised.value)
    lines = message.splitlines()
    assert lines[0] == "PIPELINE_TARGET=aws: 6 setting(s) to fix in .env before anything in the account is touched:"
    assert [line.split()[0] for line in lines[1:]] == [
        "PIPELINE_USER_ID",
        "AWS_REGION",
        "MSK_CLUSTER_ARN",
        "KAFKA_BOOTSTRAP_SERVERS",
        "CONNECT_URL",
        "REST_PROXY_URL",
    ]
    assert "provisioning for" not in capsys.readouterr().out  # no step ran, not even its dry run


def test_only_the_selected_steps_are_checked():
    settings = load_settings(pipeline_target="aws", pipeline_user_id="7e57c0de0001", aws_region="eu-west-1")
    steps = [step for step in preflight_steps() if step.name in ("bucket", "streams")]
    assert preflight.problems(settings, steps) == []
    api = [step for step in preflight_steps() if step.name == "api"]
    assert [line.split()[0] for line in preflight.problems(settings, api)] == ["REST_PROXY_URL"]


def test_msk_connect_needs_no_connect_worker_url():
    """With CONNECT_RUNNER=msk-connect the connector step is skipped, so CONNECT_URL is not asked for."""
    settings = aws(connect_runner="msk-connect", connect_url="http://localhost:8083")
    assert preflight.problems(settings, preflight_steps()) == []
    assert [
        line.split()[0] for line in preflight.problems(aws(connect_url="http://localhost:8083"), preflight_steps())
    ] == ["CONNECT_URL=http://localhost:8083"]


def preflight_steps():
    from services.provision.__main__ import STEPS

    return STEPS


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("kafka_bootstrap_servers", "127.0.0.1:9092"),
        ("kafka_bootstrap_servers", "b-1.c.amazonaws.com:9098,localhost:9092"),
        ("connect_url", "http://localhost:8083"),
        ("rest_proxy_url", "http://127.0.0.1:8082"),
        ("rest_proxy_url", "http://0.0.0.0:8082"),
    ],
)
def test_an_explicit_local_value_is_named(field, value):
    problems = preflight.problems(aws(**{field: value}), preflight_steps())
    assert problems == [problems[0]] and problems[0].startswith(f"{field.upper()}={value} points at this machine")


def test_msks_iam_listener_needs_iam_auth():
    (problem,) = preflight.problems(aws(kafka_auth="plaintext"), preflight_steps())
    assert problem == (
        "KAFKA_AUTH=plaintext, but KAFKA_BOOTSTRAP_SERVERS names MSK's IAM listener (port 9098): set KAFKA_AUTH=iam"
    )


def test_a_complete_aws_env_passes_and_the_local_target_is_never_checked():
    assert preflight.problems(aws(), preflight_steps()) == []
    assert preflight.problems(load_settings(_env_file=None), preflight_steps()) == []


def test_local_endpoints_on_the_aws_target_are_all_named_at_once():
    with pytest.raises(SettingsError) as raised:
        aws(aws_endpoint_url="http://localhost:4566", aws_endpoint_url_kinesis="http://127.0.0.1:4567")
    lines = str(raised.value).splitlines()[1:]
    assert [line.split("=")[0].strip() for line in lines] == ["AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_KINESIS"]


def test_the_dry_run_prices_what_costs_money(capsys):
    assert provision(["--dry-run"], settings=aws(kinesis_shards=2)) == 0
    out = capsys.readouterr().out
    prices = out[out.index("what this costs on AWS") :]
    assert (
        "[streams] Kinesis: 3 streams x 2 provisioned shard(s) = 6 shard(s): $0.0900/hour, about $65.70/month" in prices
    )
    assert "[api] API Gateway REST API 7e57c0de0001-pinterest-api: $3.50/million requests" in prices
    assert "[topics] MSK cluster" in prices and "$306.60/month for 2 kafka.m5.large brokers" in prices


def test_on_demand_streams_are_priced_per_stream_hour():
    (line,) = costs.kinesis(aws(kinesis_shards=0))
    assert line.startswith("Kinesis: 3 on-demand streams: $0.12/hour, about $87.60/month while it exists")


def test_price_helpers_for_the_runners_and_connect():
    assert costs.msk_connect(mcu_count=1, workers=2) == [
        "MSK Connect connector: 2 worker(s) x 1 MCU: $0.22/hour, about $160.60/month while it exists"
    ]
    assert costs.mwaa("mw1.small") == [
        "MWAA environment (mw1.small, 0 extra worker(s)): $0.49/hour, about $357.70/month while it exists"
    ]
    (emr,) = costs.emr_serverless(vcpus=4, memory_gb=16, hours_per_run=0.25, runs_per_month=30)
    assert "a run of 4 vCPU and 16 GB for 0.25 h is about $0.0757, $2.27/month at 30 run(s)" in emr


def test_the_local_dry_run_is_unchanged_no_prices(capsys):
    assert provision(["--dry-run"], settings=load_settings(_env_file=None)) == 0
    out = capsys.readouterr().out
    assert "what this costs" not in out and "would tag" not in out
    assert "/{proxy+} -> http://127.0.0.1:8082/{proxy}" in out
