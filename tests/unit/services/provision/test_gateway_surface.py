"""What the gateway exposes and what its mapping templates send to Kinesis.

On the aws target only the emulator's routes exist (and each needs the API key); locally the full surface stays.
The templates are rendered by LocalStack's own VTL engine (the one `make up` runs, from its venv) with hostile stream
names and partition keys: every rendering must be JSON whose values are exactly what the client sent, never extra
keys.
"""

from __future__ import annotations

import json
import os
import subprocess

import boto3
import pytest
from botocore.stub import Stubber
from openapi_spec_validator import validate as validate_openapi

from pipeline.settings import REPO_ROOT, load_settings
from services.provision import aws

ROLE = "arn:aws:iam::123456789012:role/r"
PROXY_URL = "http://kafka-proxy.example.com:8082"
LOCALSTACK_PYTHON = REPO_ROOT / ".state" / "venvs" / "localstack" / "bin" / "python"
HOSTILE = ["10794", 'a"b', "it's", "back\\slash", 'x", "StreamName": "other', "tab\tnew\nline", "café ☕"]
RENDER = """
import json, sys
from localstack.services.apigateway.next_gen.execute_api.template_mapping import ApiGatewayVtlTemplate
from localstack.services.apigateway.next_gen.execute_api.variables import ContextVariableOverrides

overrides = ContextVariableOverrides(
    requestOverride={"header": {}, "path": {}, "querystring": {}}, responseOverride={"header": {}, "status": 0}
)
results = []
for template, body, path in json.load(sys.stdin):
    variables = {"input": {"body": json.dumps(body), "params": {"path": path, "querystring": {}, "header": {}}},
                 "context": {}, "stageVariables": {}}
    results.append(ApiGatewayVtlTemplate().render_request(template, variables, overrides)[0])
print(json.dumps(results))
"""


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch):
    for name in list(os.environ):
        if name.startswith(("AWS_", "PIPELINE_", "REST_PROXY", "API_")):
            monkeypatch.delenv(name)


def routes(document: dict) -> set[tuple[str, str]]:
    return {(verb, path) for path, operations in document["paths"].items() for verb in operations}


def test_on_aws_only_the_emulators_routes_exist_and_all_need_the_key(clean_env):
    settings = load_settings(pipeline_target="aws", rest_proxy_url=PROXY_URL, _env_file=None)
    assert (settings.api_surface, settings.api_key_required) == ("emulator", True)
    document = aws.build_openapi(settings, ROLE)
    validate_openapi(document)
    topics = {("post", f"/topics/{settings.pipeline_user_id}.{table}") for table in ("pin", "geo", "user")}
    assert routes(document) == topics | {
        ("put", "/streams/{stream-name}/record"),
        ("put", "/streams/{stream-name}/records"),
    }
    operations = [op for ops in document["paths"].values() for op in ops.values()]
    assert all(op["security"] == [{aws.API_KEY_SCHEME: []}] for op in operations)
    for verb, path in topics:
        integration = document["paths"][path][verb]["x-amazon-apigateway-integration"]
        assert (integration["type"], integration["httpMethod"]) == ("http_proxy", "POST")
        assert integration["uri"] == f"{PROXY_URL}{path}"
    assert aws.kinesis_actions(settings) == ["kinesis:PutRecord", "kinesis:PutRecords"]


def test_the_full_surface_is_an_explicit_choice_on_aws_and_the_local_default(clean_env):
    full = load_settings(pipeline_target="aws", rest_proxy_url=PROXY_URL, api_surface="full", _env_file=None)
    local = load_settings(_env_file=None)
    assert (local.api_surface, local.api_key_required) == ("full", False)
    for settings in (full, local):
        assert ("x-amazon-apigateway-any-method", "/{proxy+}") in routes(aws.build_openapi(settings, ROLE))
    assert "kinesis:CreateStream" in aws.kinesis_actions(full)


def test_the_dry_run_names_every_route(clean_env):
    settings = load_settings(pipeline_target="aws", rest_proxy_url=PROXY_URL, _env_file=None)
    (plan,) = [line for line in aws.provision_api(settings, dry_run=True) if "REST API" in line]
    assert plan.endswith(
        "(API_SURFACE=emulator): PUT /streams/{stream-name}/record -> Kinesis PutRecord; "
        "PUT /streams/{stream-name}/records -> Kinesis PutRecords; "
        f"POST /topics/{settings.topic('pin')} -> {PROXY_URL}/topics/{settings.topic('pin')}; "
        f"POST /topics/{settings.topic('geo')} -> {PROXY_URL}/topics/{settings.topic('geo')}; "
        f"POST /topics/{settings.topic('user')} -> {PROXY_URL}/topics/{settings.topic('user')}"
    )


def render_with_localstack(cases: list[tuple[str, object, dict]]) -> list[str]:
    if not LOCALSTACK_PYTHON.exists():
        pytest.fail(f"{LOCALSTACK_PYTHON} missing: run `make setup` (it installs LocalStack's venv)")
    result = subprocess.run(
        [str(LOCALSTACK_PYTHON), "-c", RENDER], input=json.dumps(cases), capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.splitlines()[-1])


def test_templates_escape_stream_names_and_partition_keys():
    row = {"ind": 1, "title": 'say "hi"'}
    cases = []
    for value in HOSTILE:
        path = {"stream-name": value}
        cases += [
            (aws.PUT_RECORD_TEMPLATE, {"Data": row, "PartitionKey": value}, path),
            (aws.PUT_RECORDS_TEMPLATE, {"records": [{"data": row, "partition-key": value}] * 2}, path),
            (aws.STREAM_NAME_TEMPLATE, {}, path),
            (aws.CREATE_STREAM_TEMPLATE, {"ShardCount": 2}, path),
        ]
    cases.append((aws.CREATE_STREAM_TEMPLATE, {"ShardCount": '2, "StreamName": "other'}, {"stream-name": "s"}))
    rendered = [json.loads(text) for text in render_with_localstack(cases)]

    for index, value in enumerate(HOSTILE):
        record, records, named, created = rendered[4 * index : 4 * index + 4]
        assert set(record) == {"StreamName", "Data", "PartitionKey"}
        assert (record["StreamName"], record["PartitionKey"]) == (value, value)
        assert [(r["PartitionKey"], set(r)) for r in records["Records"]] == [(value, {"Data", "PartitionKey"})] * 2
        assert records["StreamName"] == value and set(records) == {"StreamName", "Records"}
        assert named == {"StreamName": value}
        assert created == {"ShardCount": 2, "StreamName": value}
    # A body cannot smuggle keys through ShardCount either: it stays one (string) value Kinesis rejects.
    assert rendered[-1] == {"ShardCount": '2, "StreamName": "other', "StreamName": "s"}


def test_gateway_resources_found_untagged_are_tagged_on_aws_only(clean_env, monkeypatch):
    """An API, plan or key made by a provisioning run from before the tags gets them (so teardown knows it); the
    request is checked against API Gateway's service model by botocore's Stubber (moto tags only stages)."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    settings = load_settings(pipeline_target="aws", aws_region="eu-west-1", rest_proxy_url=PROXY_URL, _env_file=None)
    apigw = boto3.client("apigateway", region_name="eu-west-1")
    with Stubber(apigw) as stub:
        for kind in ("restapis", "usageplans", "apikeys"):
            arn = f"arn:aws:apigateway:eu-west-1::/{kind}/abc123"
            stub.add_response("tag_resource", {}, {"resourceArn": arn, "tags": settings.resource_tags})
            aws.adopt(settings, apigw, kind, {"id": "abc123", "tags": {"owner": "someone"}})
            aws.adopt(settings, apigw, kind, {"id": "abc123", "tags": {**settings.resource_tags, "owner": "x"}})
        aws.adopt(load_settings(_env_file=None), apigw, "restapis", {"id": "abc123"})  # local: no call
        stub.assert_no_pending_responses()
