"""The `.env` switch to AWS: with PIPELINE_TARGET=aws, provisioning creates the same streams, role, API and stage
(here in moto's in-process AWS) and nothing it creates or stores points at this machine."""

from __future__ import annotations

import json
import os
import re
import stat

import boto3
import pytest
from jsonschema import Draft4Validator
from moto import mock_aws
from openapi_spec_validator import validate as validate_openapi

from pipeline.settings import Settings, load_settings
from services.provision import aws
from services.provision import iam as iam_roles
from tests.support.aws import fake_account
from tests.support.iam import deny_iam_calls

USER_ID = "7e57c0de0001"
PROXY_URL = "http://kafka-proxy.example.com:8082"
REGION = "eu-west-1"
ACTIONS = {
    ("/streams", "GET"): "ListStreams",
    ("/streams/{stream-name}", "GET"): "DescribeStream",
    ("/streams/{stream-name}", "POST"): "CreateStream",
    ("/streams/{stream-name}", "DELETE"): "DeleteStream",
    ("/streams/{stream-name}/record", "PUT"): "PutRecord",
    ("/streams/{stream-name}/records", "PUT"): "PutRecords",
}
# moto keeps the OpenAPI key of the ANY method as the method name; API Gateway calls it ANY.
ANY_METHOD = {"ANY", "X-AMAZON-APIGATEWAY-ANY-METHOD"}
LOCAL = re.compile(r"localhost|127\.0\.0\.1|\[::1\]|localstack|:4566", re.IGNORECASE)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch):
    """No pipeline or AWS variables from the caller's shell."""
    for name in list(os.environ):
        if name.startswith(("AWS_", "PIPELINE_", "REST_PROXY", "API_", "KINESIS_")):
            monkeypatch.delenv(name)


@pytest.fixture
def aws_env(clean_env, monkeypatch: pytest.MonkeyPatch, tmp_path):
    """A clean AWS-like environment: fake credentials, no endpoint overrides, no user config files."""
    fake_account(monkeypatch, tmp_path)
    with mock_aws():
        yield tmp_path


def aws_settings(state_dir, **overrides) -> Settings:
    values = {
        "pipeline_target": "aws",
        "pipeline_user_id": USER_ID,
        "aws_region": REGION,
        "rest_proxy_url": PROXY_URL,
        "state_dir": state_dir,
        "_env_file": None,
    }
    values.update(overrides)
    return load_settings(**values)


def provision(settings: Settings) -> list[str]:
    return aws.provision_streams(settings, dry_run=False) + aws.provision_api(settings, dry_run=False)


def our_api(settings: Settings) -> dict:
    apis = [a for a in boto3.client("apigateway", region_name=REGION).get_rest_apis()["items"]]
    matching = [a for a in apis if a["name"] == settings.api_name]
    assert len(matching) == 1, apis
    return matching[0]


def methods_by_route(api_id: str) -> dict[tuple[str, str], dict]:
    apigw = boto3.client("apigateway", region_name=REGION)
    routes = {}
    for resource in apigw.get_resources(restApiId=api_id)["items"]:
        for method in resource.get("resourceMethods") or {}:
            routes[resource["path"], method] = apigw.get_method(
                restApiId=api_id, resourceId=resource["id"], httpMethod=method
            )
    return routes


def test_settings_for_aws_drop_local_endpoints(aws_env):
    settings = aws_settings(aws_env)
    for service in ("kinesis", "apigateway", "iam"):
        kwargs = settings.boto3_client_kwargs(service)
        assert kwargs["region_name"] == REGION
        assert "endpoint_url" not in kwargs


def test_provisioning_creates_streams_role_api_and_stage(aws_env):
    settings = aws_settings(aws_env, api_surface="full")
    lines = provision(settings)

    kinesis = boto3.client("kinesis", region_name=REGION)
    for name in (f"streaming-{USER_ID}-pin", f"streaming-{USER_ID}-geo", f"streaming-{USER_ID}-user"):
        summary = kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]
        assert summary["StreamStatus"] == "ACTIVE"
        assert summary["OpenShardCount"] == settings.kinesis_shards

    iam = boto3.client("iam", region_name=REGION)
    role = iam.get_role(RoleName=settings.role_name)["Role"]
    trust = role["AssumeRolePolicyDocument"]
    trust = json.loads(trust) if isinstance(trust, str) else trust
    assert trust["Statement"][0]["Principal"] == {"Service": "apigateway.amazonaws.com"}
    policy = iam.get_role_policy(RoleName=settings.role_name, PolicyName="kinesis-front-door")["PolicyDocument"]
    actions = {action for statement in policy["Statement"] for action in statement["Action"]}
    assert {"kinesis:PutRecord", "kinesis:PutRecords", "kinesis:ListStreams", "kinesis:DescribeStream"} <= actions
    assert {"kinesis:CreateStream", "kinesis:DeleteStream"} <= actions

    api = our_api(settings)
    routes = methods_by_route(api["id"])
    for (path, verb), action in ACTIONS.items():
        integration = routes[path, verb]["methodIntegration"]
        assert integration["type"].upper() == "AWS"  # moto echoes the OpenAPI spelling
        assert integration["httpMethod"] == "POST"
        assert integration["uri"] == f"arn:aws:apigateway:{REGION}:kinesis:action/{action}"
        assert integration["credentials"] == role["Arn"]
        assert integration["requestParameters"] == {
            "integration.request.header.Content-Type": "'application/x-amz-json-1.1'"
        }
        assert "$input.params('stream-name')" in integration["requestTemplates"]["application/json"] or (
            action == "ListStreams"
        )
        patterns = {
            r.get("selectionPattern", ""): r["statusCode"] for r in integration["integrationResponses"].values()
        }
        assert patterns == {"": "200", "4\\d{2}": "400", "5\\d{2}": "500"}
    put_record = routes["/streams/{stream-name}/record", "PUT"]["methodIntegration"]["requestTemplates"]
    assert "$util.base64Encode($input.json('$.Data'))" in put_record["application/json"]
    assert "$input.path('$.PartitionKey')" in put_record["application/json"]

    proxy = [m for (path, verb), m in routes.items() if path == "/{proxy+}" and verb in ANY_METHOD]
    assert len(proxy) == 1
    integration = proxy[0]["methodIntegration"]
    assert integration["type"].upper() == "HTTP_PROXY"
    assert integration["uri"] == f"{PROXY_URL}/{{proxy}}"
    assert integration["requestParameters"] == {"integration.request.path.proxy": "method.request.path.proxy"}

    apigw = boto3.client("apigateway", region_name=REGION)
    stage = apigw.get_stage(restApiId=api["id"], stageName=settings.api_stage)
    assert stage["deploymentId"]
    expected_url = f"https://{api['id']}.execute-api.{REGION}.amazonaws.com/{settings.api_stage}"
    assert settings.resolved_invoke_url() == expected_url
    assert any(expected_url in line for line in lines)


def test_nothing_points_at_this_machine(aws_env):
    settings = aws_settings(aws_env, api_key_required=True)
    lines = provision(settings)
    apigw = boto3.client("apigateway", region_name=REGION)
    api = our_api(settings)
    everything = {
        "lines": lines,
        "api": apigw.get_rest_api(restApiId=api["id"]),
        "routes": {f"{verb} {path}": method for (path, verb), method in methods_by_route(api["id"]).items()},
        "stages": apigw.get_stages(restApiId=api["id"]),
        "plans": apigw.get_usage_plans(),
        "streams": [
            boto3.client("kinesis", region_name=REGION).describe_stream(StreamName=s)["StreamDescription"]
            for s in settings.streams
        ],
        "role": boto3.client("iam", region_name=REGION).get_role(RoleName=settings.role_name),
        "invoke_url": settings.invoke_url_file.read_text(),
        "document": aws.build_openapi(settings, "arn:aws:iam::123456789012:role/r"),
    }
    dump = json.dumps(everything, default=str)
    assert not LOCAL.search(dump), LOCAL.search(dump)
    assert settings.resolved_invoke_url().startswith("https://")


def test_rerun_is_idempotent(aws_env):
    settings = aws_settings(aws_env)
    provision(settings)
    api_before = our_api(settings)
    routes_before = methods_by_route(api_before["id"])
    url_before = settings.resolved_invoke_url()

    lines = provision(settings)

    api_after = our_api(settings)  # asserts there is still exactly one
    assert api_after["id"] == api_before["id"]
    assert set(methods_by_route(api_after["id"])) == set(routes_before)
    assert settings.resolved_invoke_url() == url_before
    assert any(line.startswith("exists streaming-") for line in lines)
    apigw = boto3.client("apigateway", region_name=REGION)
    assert [s["stageName"] for s in apigw.get_stages(restApiId=api_after["id"])["item"]] == [settings.api_stage]
    assert len(boto3.client("kinesis", region_name=REGION).list_streams()["StreamNames"]) == 3


def test_api_key_required_creates_plan_and_key_and_reuses_it(aws_env):
    settings = aws_settings(aws_env, api_key_required=True)
    provision(settings)
    key_value = settings.resolved_api_key()
    assert key_value and len(key_value) >= 20
    assert stat.S_IMODE(settings.api_key_file.stat().st_mode) == 0o600

    apigw = boto3.client("apigateway", region_name=REGION)
    api = our_api(settings)
    plans = [p for p in apigw.get_usage_plans()["items"] if p["name"] == settings.usage_plan_name]
    assert len(plans) == 1
    assert {"apiId": api["id"], "stage": settings.api_stage} in [
        {"apiId": s["apiId"], "stage": s["stage"]} for s in plans[0]["apiStages"]
    ]
    plan_keys = apigw.get_usage_plan_keys(usagePlanId=plans[0]["id"])["items"]
    assert [k["value"] for k in plan_keys] == [key_value]

    provision(settings)
    keys = [k for k in apigw.get_api_keys(includeValues=True)["items"] if k["name"] == settings.api_key_name]
    assert [k["value"] for k in keys] == [key_value]


def test_every_method_requires_the_key_when_configured(aws_env):
    role = "arn:aws:iam::123456789012:role/r"
    with_key = aws.build_openapi(aws_settings(aws_env, api_key_required=True, api_surface="full"), role)
    without_key = aws.build_openapi(aws_settings(aws_env, api_key_required=False, api_surface="full"), role)
    operations = [op for path in with_key["paths"].values() for op in path.values()]
    assert len(operations) == 7
    assert all(op["security"] == [{aws.API_KEY_SCHEME: []}] for op in operations)
    assert not any("security" in op for path in without_key["paths"].values() for op in path.values())
    assert with_key["components"]["securitySchemes"][aws.API_KEY_SCHEME]["name"] == "x-api-key"


def test_write_methods_validate_their_body(aws_env):
    document = aws.build_openapi(aws_settings(aws_env), "arn:aws:iam::123456789012:role/r")
    assert document["x-amazon-apigateway-request-validators"][aws.BODY_VALIDATOR]["validateRequestBody"] is True
    for path, model in (
        ("/streams/{stream-name}/record", "PutRecordInput"),
        ("/streams/{stream-name}/records", "PutRecordsInput"),
    ):
        operation = document["paths"][path]["put"]
        assert operation["x-amazon-apigateway-request-validator"] == aws.BODY_VALIDATOR
        assert operation["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(model)
    assert document["components"]["schemas"]["PutRecordInput"]["required"] == ["Data", "PartitionKey"]
    records = document["components"]["schemas"]["PutRecordsInput"]["properties"]["records"]
    assert records["items"]["required"] == ["data", "partition-key"]


def test_aws_target_refuses_a_local_rest_proxy(aws_env):
    settings = aws_settings(aws_env, rest_proxy_url="http://127.0.0.1:8082")
    with pytest.raises(aws.ProvisionError, match="REST_PROXY_URL"):
        aws.provision_api(settings, dry_run=False)
    assert boto3.client("apigateway", region_name=REGION).get_rest_apis()["items"] == []


def test_dry_run_changes_nothing(aws_env):
    settings = aws_settings(aws_env)
    lines = aws.provision_streams(settings, dry_run=True) + aws.provision_api(settings, dry_run=True)
    assert len(lines) >= 6
    assert boto3.client("kinesis", region_name=REGION).list_streams()["StreamNames"] == []
    assert boto3.client("apigateway", region_name=REGION).get_rest_apis()["items"] == []
    assert not settings.invoke_url_file.exists()


def test_on_demand_when_shards_is_zero(aws_env):
    settings = aws_settings(aws_env, kinesis_shards=0)
    aws.provision_streams(settings, dry_run=False)
    summary = boto3.client("kinesis", region_name=REGION).describe_stream_summary(StreamName=settings.streams[0])
    assert summary["StreamDescriptionSummary"]["StreamModeDetails"]["StreamMode"] == "ON_DEMAND"


def test_invoke_url_forms(clean_env, tmp_path):
    local = load_settings(state_dir=tmp_path, _env_file=None)
    assert aws.invoke_url(local, "abc123") == "http://127.0.0.1:4566/_aws/execute-api/abc123/prod"
    remote = load_settings(pipeline_target="aws", aws_region="us-west-2", api_stage="dev", _env_file=None)
    assert aws.invoke_url(remote, "abc123") == "https://abc123.execute-api.us-west-2.amazonaws.com/dev"


@pytest.mark.parametrize("api_key_required", [False, True])
def test_document_is_valid_openapi_30(clean_env, tmp_path, api_key_required):
    settings = load_settings(state_dir=tmp_path, api_key_required=api_key_required, _env_file=None)
    validate_openapi(aws.build_openapi(settings, "arn:aws:iam::123456789012:role/r"))


@pytest.mark.parametrize(
    ("model", "body", "valid"),
    [
        ("PutRecordInput", {"StreamName": "s", "Data": {"ind": 1}, "PartitionKey": "1"}, True),
        ("PutRecordInput", {"Data": {"ind": 1}, "PartitionKey": "1"}, True),
        ("PutRecordInput", {"Data": {"ind": 1}}, False),
        ("PutRecordInput", {"PartitionKey": "1"}, False),
        ("PutRecordInput", {"Data": None, "PartitionKey": "1"}, False),
        ("PutRecordInput", {"Data": {"ind": 1}, "PartitionKey": ""}, False),
        ("PutRecordInput", ["not", "an", "object"], False),
        ("PutRecordsInput", {"records": [{"data": {"ind": 1}, "partition-key": "1"}]}, True),
        ("PutRecordsInput", {"records": [{"data": {"ind": 1}}]}, False),
        ("PutRecordsInput", {"records": []}, False),
        ("PutRecordsInput", {"Records": [{"Data": {"ind": 1}, "PartitionKey": "1"}]}, False),
    ],
)
def test_models_accept_the_spec_bodies_and_reject_bad_ones(model, body, valid):
    """API Gateway validates bodies against these draft-04 models; this is the same check, offline."""
    validator = Draft4Validator(aws.MODELS[model])
    assert validator.is_valid(body) is valid


def test_a_precreated_role_without_iam_write_permission_is_used_as_is(aws_env, monkeypatch):
    settings = aws_settings(aws_env, api_surface="full")
    iam = boto3.client("iam", region_name=REGION)
    arn = iam.create_role(
        RoleName=settings.role_name,
        AssumeRolePolicyDocument=json.dumps(iam_roles.trust_policy("apigateway.amazonaws.com")),
    )["Role"]["Arn"]
    deny_iam_calls(monkeypatch, aws, "update_assume_role_policy", "put_role_policy", "tag_role")
    lines = aws.provision_api(settings, dry_run=False)
    assert any(line.startswith(f"using existing execution role {arn}") for line in lines)
    assert f"could not tag role {settings.role_name} (no permission): teardown will keep it" in lines
    routes = methods_by_route(our_api(settings)["id"])
    assert routes["/streams", "GET"]["methodIntegration"]["credentials"] == arn


def test_the_api_key_file_is_created_private_not_chmodded_after(aws_env, monkeypatch):
    """The key is never readable by others, not even between a write and a chmod: with the chmods of the process
    turned off and a permissive umask, the file is still 0600."""
    settings = aws_settings(aws_env, api_key_required=True)
    monkeypatch.setattr(os, "chmod", lambda *args, **kwargs: None)
    previous = os.umask(0o022)
    try:
        provision(settings)
    finally:
        os.umask(previous)
    assert stat.S_IMODE(settings.api_key_file.stat().st_mode) == 0o600
