"""Provisioning steps `streams` and `api`: the Kinesis streams and the API Gateway front door (docs/contract.md §2).

One code path for LocalStack and a real AWS account: every client comes from `settings.boto3_client_kwargs`, so
the AWS target has no endpoint override and nothing here branches on the emulator, except where the *invoke URL*
of a stage is spelled (AWS has a DNS name per API; an endpoint override has the `/restapis/...` path form).

Why the API is one OpenAPI document sent with `put_rest_api(mode=overwrite)`: a re-run replaces the whole
definition (resources, methods, integrations, models, validators) in one call, so it is idempotent by construction,
never leaves half-updated routes behind, and is exactly the artefact a real account receives. The API itself is
found by name, so re-runs update it instead of creating duplicates; a new deployment then moves the stage.

The Kinesis integrations follow the AWS tutorial "Create a REST API as an Amazon Kinesis proxy" (mapping templates,
Content-Type header mapping, execution role), with two deliberate differences:
- PutRecords encodes each record with `$input.json('$.records[i].data')` instead of the tutorial's
  `$util.base64Encode($elem.data)`: on AWS an object interpolated from `$input.path` renders as a Java map
  (`{ind=1, ...}`), not JSON, while LocalStack's `base64Encode` JSON-encodes it. `$input.json` is JSON on both,
  matching PutRecord's `$input.json('$.Data')`.
- The two write methods have a request validator with a JSON-schema model, so a body that is not JSON or misses
  Data/PartitionKey gets a 400 from the gateway and nothing reaches Kinesis; Kinesis errors (unknown stream, ...)
  come back as 400 with Kinesis's own message through a `4\\d{2}` integration response.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import Iterable, Iterator
from typing import Any

import boto3
from botocore.exceptions import ClientError, WaiterError

from pipeline.private import write_private
from pipeline.settings import Settings, is_local_url

STREAM_WAIT = {"Delay": 1, "MaxAttempts": 300}
RECREATE_WAIT = {"Delay": 1, "MaxAttempts": 60}
JSON_11 = "'application/x-amz-json-1.1'"
API_KEY_SCHEME = "api_key"
BODY_VALIDATOR = "validate-body"

# Mapping templates (AWS tutorial "Create a REST API as an Amazon Kinesis proxy"; PutRecords: see module docstring).
LIST_STREAMS_TEMPLATE = "{}"
STREAM_NAME_TEMPLATE = """{
    "StreamName": "$input.params('stream-name')"
}"""
CREATE_STREAM_TEMPLATE = """{
    "ShardCount": #if($input.path('$.ShardCount') == '') 5 #else $input.path('$.ShardCount') #end,
    "StreamName": "$input.params('stream-name')"
}"""
PUT_RECORD_TEMPLATE = """{
    "StreamName": "$input.params('stream-name')",
    "Data": "$util.base64Encode($input.json('$.Data'))",
    "PartitionKey": "$input.path('$.PartitionKey')"
}"""
PUT_RECORDS_TEMPLATE = """{
    "StreamName": "$input.params('stream-name')",
    "Records": [
       #foreach($elem in $input.path('$.records'))
          {
            "Data": "$util.base64Encode($input.json("$.records[$foreach.index].data"))",
            "PartitionKey": "$elem.partition-key"
          }#if($foreach.hasNext),#end
        #end
    ]
}"""

# Draft-04 JSON schema that is also a valid OpenAPI 3.0 schema (no type lists, no "null" type). Data is a row
# object (docs/contract.md §2); the partition key is a string, as Kinesis defines it.
ROW = {"type": "object"}
PARTITION_KEY = {"type": "string", "minLength": 1, "maxLength": 256}
MODELS: dict[str, dict[str, Any]] = {
    "Empty": {"type": "object", "title": "Empty Schema"},
    "PutRecordInput": {
        "title": "PutRecord proxy single-record payload",
        "type": "object",
        "required": ["Data", "PartitionKey"],
        "properties": {"StreamName": {"type": "string"}, "Data": ROW, "PartitionKey": PARTITION_KEY},
    },
    "PutRecordsInput": {
        "title": "PutRecords proxy payload data",
        "type": "object",
        "required": ["records"],
        "properties": {
            "records": {
                "type": "array",
                "minItems": 1,
                "maxItems": 500,
                "items": {
                    "type": "object",
                    "required": ["data", "partition-key"],
                    "properties": {"data": ROW, "partition-key": PARTITION_KEY},
                },
            }
        },
    },
}


class ProvisionError(SystemExit):
    """A configuration problem found before any resource is touched; exits with a message, no traceback."""


def invoke_url(settings: Settings, api_id: str) -> str:
    """Where clients call the stage: AWS's per-API DNS name, or LocalStack's path form on the endpoint override
    (`/_aws/execute-api/<api>/<stage>`; the older `/restapis/<api>/<stage>/_user_request_` is deprecated and logs a
    warning on every request, a cost measured in scripts/bench/bench_gateway.py)."""
    if settings.pipeline_target == "aws" or not settings.aws_endpoint_url:
        return f"https://{api_id}.execute-api.{settings.aws_region}.amazonaws.com/{settings.api_stage}"
    return f"{settings.aws_endpoint_url.rstrip('/')}/_aws/execute-api/{api_id}/{settings.api_stage}"


def _client(settings: Settings, service: str):
    return boto3.client(service, **settings.boto3_client_kwargs(service))


# --- streams ---------------------------------------------------------------------------------------------------
def provision_streams(settings: Settings, dry_run: bool) -> list[str]:
    """Create the three Kinesis streams if missing and wait until each is ACTIVE."""
    capacity = "on-demand" if settings.kinesis_shards == 0 else f"{settings.kinesis_shards} shard(s)"
    if dry_run:
        return [f"would ensure Kinesis stream {name} ({capacity}) is ACTIVE" for name in settings.streams]
    kinesis = _client(settings, "kinesis")
    return [_ensure_stream(kinesis, name, settings.kinesis_shards) for name in settings.streams]


def delete_streams(settings: Settings, names: Iterable[str], wait: bool = False) -> None:
    """Delete streams that exist (tests and benchmarks clean up after themselves, so the Kinesis store's disk use does
    not grow with every run); `wait` until each is gone."""
    kinesis = _client(settings, "kinesis")
    for name in names:
        try:
            kinesis.delete_stream(StreamName=name, EnforceConsumerDeletion=True)
            if wait:
                kinesis.get_waiter("stream_not_exists").wait(StreamName=name, WaiterConfig=RECREATE_WAIT)
        except kinesis.exceptions.ResourceNotFoundException:
            pass


def recreate_streams(settings: Settings, names: Iterable[str] | None = None) -> list[str]:
    """The user's three streams (or those of them in `names`), empty (tests, benchmarks): delete them, then the
    provisioning step, retried: a Kinesis store may not list a stream for a moment after CreateStream, which fails
    boto3's StreamExists waiter."""
    delete_streams(settings, settings.streams if names is None else names, wait=True)
    for attempt in range(5):
        try:
            return provision_streams(settings, dry_run=False)
        except WaiterError:
            time.sleep(2 + attempt)
    return provision_streams(settings, dry_run=False)


def _describe_stream(kinesis, name: str) -> dict[str, Any] | None:
    try:
        return kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]
    except kinesis.exceptions.ResourceNotFoundException:
        return None


def _ensure_stream(kinesis, name: str, shards: int) -> str:
    summary = _describe_stream(kinesis, name)
    if summary and summary["StreamStatus"] == "DELETING":
        kinesis.get_waiter("stream_not_exists").wait(StreamName=name, WaiterConfig=STREAM_WAIT)
        summary = None
    action = "exists"
    if summary is None:
        capacity = {"StreamModeDetails": {"StreamMode": "ON_DEMAND"}} if shards == 0 else {"ShardCount": shards}
        try:
            kinesis.create_stream(StreamName=name, **capacity)
            action = "created"
        except kinesis.exceptions.ResourceInUseException:
            pass  # created by a concurrent run; waiting below is all that is left to do
    kinesis.get_waiter("stream_exists").wait(StreamName=name, WaiterConfig=STREAM_WAIT)
    summary = _describe_stream(kinesis, name) or {}
    mode = summary.get("StreamModeDetails", {}).get("StreamMode", "PROVISIONED")
    open_shards = summary.get("OpenShardCount")
    line = f"{action} {name}: {summary.get('StreamStatus')}, {open_shards} open shard(s), {mode.lower()}"
    if action == "exists" and shards and mode == "PROVISIONED" and open_shards != shards:
        line += f" (KINESIS_SHARDS={shards}; an existing stream is not resharded)"
    return line


# --- execution role --------------------------------------------------------------------------------------------
def trust_policy() -> dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "apigateway.amazonaws.com"}, "Action": "sts:AssumeRole"}
        ],
    }


def kinesis_policy(settings: Settings, role_arn: str) -> dict[str, Any]:
    """What the API may do in Kinesis: list everything, touch only this user's `streaming-<id>-*` streams."""
    partition, account = role_arn.split(":")[1], role_arn.split(":")[4]
    streams = settings.streams_arn(partition, account)
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": ["kinesis:ListStreams"], "Resource": "*"},
            {
                "Effect": "Allow",
                "Action": [
                    "kinesis:PutRecord",
                    "kinesis:PutRecords",
                    "kinesis:DescribeStream",
                    "kinesis:DescribeStreamSummary",
                    "kinesis:CreateStream",
                    "kinesis:DeleteStream",
                ],
                "Resource": streams,
            },
        ],
    }


def _ensure_role(settings: Settings) -> tuple[str, str]:
    iam = _client(settings, "iam")
    name = settings.role_name
    trust = json.dumps(trust_policy())
    try:
        role = iam.get_role(RoleName=name)["Role"]
    except iam.exceptions.NoSuchEntityException:
        role = iam.create_role(
            RoleName=name,
            AssumeRolePolicyDocument=trust,
            Description="Lets API Gateway call Kinesis for the pipeline's streaming front door",
        )["Role"]
        action = "created"
    else:
        action = "updated"
    try:
        if action == "updated":
            iam.update_assume_role_policy(RoleName=name, PolicyDocument=trust)
        policy = json.dumps(kinesis_policy(settings, role["Arn"]))
        iam.put_role_policy(RoleName=name, PolicyName="kinesis-front-door", PolicyDocument=policy)
    except ClientError as error:
        # Accounts handed out for courses often pre-create this role and deny IAM writes: use the role as it is.
        if error.response["Error"]["Code"] not in ("AccessDenied", "AccessDeniedException"):
            raise
        return role["Arn"], f"using existing execution role {role['Arn']} as is (no permission to update it)"
    return role["Arn"], f"{action} execution role {role['Arn']}"


# --- REST API definition ---------------------------------------------------------------------------------------
def _path_parameter(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


def _responses(*codes: str) -> dict[str, Any]:
    empty = {"application/json": {"schema": {"$ref": "#/components/schemas/Empty"}}}
    return {code: {"description": f"{code} response", "content": empty} for code in codes}


def build_openapi(settings: Settings, role_arn: str) -> dict[str, Any]:
    """The whole REST API as an OpenAPI 3.0 document with API Gateway extensions (pure; unit-tested)."""
    security = [{API_KEY_SCHEME: []}] if settings.api_key_required else []

    def kinesis_method(action: str, template: str, model: str | None = None) -> dict[str, Any]:
        operation: dict[str, Any] = {
            "operationId": action,
            "responses": _responses("200", "400", "500"),
            "x-amazon-apigateway-integration": {
                "type": "aws",
                "httpMethod": "POST",
                "uri": f"arn:aws:apigateway:{settings.aws_region}:kinesis:action/{action}",
                "credentials": role_arn,
                "requestParameters": {"integration.request.header.Content-Type": JSON_11},
                "requestTemplates": {"application/json": template},
                "passthroughBehavior": "when_no_templates",
                "timeoutInMillis": settings.gateway_timeout_ms,
                "responses": {
                    "default": {"statusCode": "200"},
                    "4\\d{2}": {"statusCode": "400"},
                    "5\\d{2}": {"statusCode": "500"},
                },
            },
        }
        if action != "ListStreams":
            operation["parameters"] = [_path_parameter("stream-name")]
        if model:
            schema = {"$ref": f"#/components/schemas/{model}"}
            operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": schema}}}
            operation["x-amazon-apigateway-request-validator"] = BODY_VALIDATOR
        if security:
            operation["security"] = security
        return operation

    proxy: dict[str, Any] = {
        "operationId": "RestProxy",
        "parameters": [_path_parameter("proxy")],
        "responses": {"200": {"description": "200 response"}},
        "x-amazon-apigateway-integration": {
            "type": "http_proxy",
            "httpMethod": "ANY",
            "uri": f"{settings.rest_proxy_url.rstrip('/')}/{{proxy}}",
            "requestParameters": {"integration.request.path.proxy": "method.request.path.proxy"},
            "passthroughBehavior": "when_no_match",
            "timeoutInMillis": settings.gateway_timeout_ms,
            "responses": {"default": {"statusCode": "200"}},
        },
    }
    if security:
        proxy["security"] = security

    return {
        "openapi": "3.0.1",
        "info": {
            "title": settings.api_name,
            "description": "Pinterest pipeline front door: Kafka REST proxy (/{proxy+}) and Kinesis (/streams)",
            "version": "1",
        },
        "paths": {
            "/{proxy+}": {"x-amazon-apigateway-any-method": proxy},
            "/streams": {"get": kinesis_method("ListStreams", LIST_STREAMS_TEMPLATE)},
            "/streams/{stream-name}": {
                "get": kinesis_method("DescribeStream", STREAM_NAME_TEMPLATE),
                "post": kinesis_method("CreateStream", CREATE_STREAM_TEMPLATE),
                "delete": kinesis_method("DeleteStream", STREAM_NAME_TEMPLATE),
            },
            "/streams/{stream-name}/record": {
                "put": kinesis_method("PutRecord", PUT_RECORD_TEMPLATE, "PutRecordInput")
            },
            "/streams/{stream-name}/records": {
                "put": kinesis_method("PutRecords", PUT_RECORDS_TEMPLATE, "PutRecordsInput")
            },
        },
        "components": {
            "schemas": MODELS,
            "securitySchemes": {API_KEY_SCHEME: {"type": "apiKey", "name": "x-api-key", "in": "header"}},
        },
        "x-amazon-apigateway-api-key-source": "HEADER",
        "x-amazon-apigateway-request-validators": {
            BODY_VALIDATOR: {"validateRequestBody": True, "validateRequestParameters": True}
        },
    }


# --- REST API, stage, key --------------------------------------------------------------------------------------
def _rest_apis(apigw) -> Iterator[dict[str, Any]]:
    for page in apigw.get_paginator("get_rest_apis").paginate():
        yield from page.get("items", [])


def _ensure_rest_api(settings: Settings, apigw) -> tuple[str, list[str]]:
    name = settings.api_name
    found = [api for api in _rest_apis(apigw) if api["name"] == name]
    if found:
        found.sort(key=lambda api: api.get("createdDate") or 0)
        lines = [f"found REST API {name} ({found[0]['id']})"]
        lines += [f"WARNING: another REST API named {name} exists ({api['id']}); not touched" for api in found[1:]]
        return found[0]["id"], lines
    tags = {"project": "pinterest-pipeline", "pipeline-user-id": settings.pipeline_user_id}
    if settings.pipeline_target == "local":
        # LocalStack honours this tag as the API id, so the invoke URL survives an emulator restart. API ids are
        # 10 characters; a hash of the user id (not a prefix) keeps users apart.
        tags["_custom_id_"] = hashlib.sha256(settings.pipeline_user_id.encode()).hexdigest()[:10]
    api = apigw.create_rest_api(
        name=name,
        description="Pinterest pipeline front door",
        apiKeySource="HEADER",
        endpointConfiguration={"types": ["REGIONAL"]},
        tags=tags,
    )
    return api["id"], [f"created REST API {name} ({api['id']})"]


def _drop_orphan_validators(apigw, api_id: str) -> int:
    """Emulators may keep validators an overwrite replaced; AWS drops them itself (then this finds none)."""
    used = set()
    for page in apigw.get_paginator("get_resources").paginate(restApiId=api_id, embed=["methods"]):
        for resource in page.get("items", []):
            for method in (resource.get("resourceMethods") or {}).values():
                if method.get("requestValidatorId"):
                    used.add(method["requestValidatorId"])
    orphans = [v["id"] for v in apigw.get_request_validators(restApiId=api_id).get("items", []) if v["id"] not in used]
    for validator_id in orphans:
        apigw.delete_request_validator(restApiId=api_id, requestValidatorId=validator_id)
    return len(orphans)


def _deploy(settings: Settings, apigw, api_id: str) -> list[str]:
    stage = settings.api_stage
    deployment = apigw.create_deployment(restApiId=api_id, stageName=stage, description="provisioned")
    in_use = {s.get("deploymentId") for s in apigw.get_stages(restApiId=api_id).get("item", [])}
    in_use.add(deployment["id"])
    removed = 0
    for old in apigw.get_deployments(restApiId=api_id).get("items", []):
        if old["id"] in in_use:
            continue
        try:
            apigw.delete_deployment(restApiId=api_id, deploymentId=old["id"])
            removed += 1
        except apigw.exceptions.BadRequestException:
            pass  # still referenced (e.g. a canary); keeping an old deployment is harmless
    return [f"deployed stage {stage} (deployment {deployment['id']}; {removed} old deployment(s) removed)"]


def _api_key_value(settings: Settings) -> str:
    if settings.api_key:
        return settings.api_key
    if settings.api_key_file.exists() and (stored := settings.api_key_file.read_text().strip()):
        return stored
    return secrets.token_urlsafe(30)


def _ensure_api_key(settings: Settings, apigw, api_id: str) -> list[str]:
    value = _api_key_value(settings)
    name = settings.api_key_name
    keys = [k for k in apigw.get_api_keys(nameQuery=name, includeValues=True).get("items", []) if k["name"] == name]
    key = next((k for k in keys if k.get("value") == value), None)
    for stale in (k for k in keys if k is not key):
        apigw.delete_api_key(apiKey=stale["id"])  # a key's value cannot be changed in place
    if key is None:
        key = apigw.create_api_key(name=name, value=value, enabled=True)
    elif not key.get("enabled", True):
        apigw.update_api_key(apiKey=key["id"], patchOperations=[{"op": "replace", "path": "/enabled", "value": "true"}])

    plan_name = settings.usage_plan_name
    stage = {"apiId": api_id, "stage": settings.api_stage}
    plan = next((p for p in apigw.get_usage_plans().get("items", []) if p["name"] == plan_name), None)
    if plan is None:
        plan = apigw.create_usage_plan(name=plan_name, apiStages=[stage])
    elif stage not in [{"apiId": s["apiId"], "stage": s["stage"]} for s in plan.get("apiStages", [])]:
        operation = {"op": "add", "path": "/apiStages", "value": f"{api_id}:{settings.api_stage}"}
        apigw.update_usage_plan(usagePlanId=plan["id"], patchOperations=[operation])
    try:
        apigw.create_usage_plan_key(usagePlanId=plan["id"], keyId=key["id"], keyType="API_KEY")
    except ClientError as error:
        if error.response["Error"]["Code"] != "ConflictException":
            raise
    where = "API_KEY"
    if not settings.api_key:
        write_private(settings.api_key_file, value + "\n")  # 0600 from its creation, replaced atomically
        where = str(settings.api_key_file)
    return [f"methods require x-api-key: key {name} ({key['id']}) in usage plan {plan_name}; value in {where}"]


def provision_api(settings: Settings, dry_run: bool) -> list[str]:
    """Create or update the REST API, deploy its stage, store the invoke URL where the emulator finds it."""
    if settings.pipeline_target == "aws" and is_local_url(settings.rest_proxy_url):
        raise ProvisionError(
            f"REST_PROXY_URL={settings.rest_proxy_url} points at this machine, but PIPELINE_TARGET=aws: API Gateway "
            "must reach the Kafka REST proxy over the network. Set REST_PROXY_URL to the proxy's address "
            "(for example http://<ec2-public-dns>:8082)."
        )
    name = settings.api_name
    if dry_run:
        lines = [
            f"would ensure execution role {settings.role_name} (trust apigateway.amazonaws.com; Kinesis access)",
            f"would create or overwrite REST API {name}: /{{proxy+}} ANY -> {settings.rest_proxy_url}/{{proxy}}; "
            "/streams GET, /streams/{stream-name} GET|POST|DELETE, /record PUT, /records PUT -> Kinesis",
            f"would deploy stage {settings.api_stage} and write the invoke URL to {settings.invoke_url_file}",
        ]
        if settings.api_key_required:
            lines.append(f"would require x-api-key (usage plan {settings.usage_plan_name})")
        return lines

    role_arn, role_line = _ensure_role(settings)
    lines = [role_line]
    apigw = _client(settings, "apigateway")
    api_id, found_lines = _ensure_rest_api(settings, apigw)
    lines += found_lines
    document = build_openapi(settings, role_arn)
    result = apigw.put_rest_api(
        restApiId=api_id, mode="overwrite", failOnWarnings=False, body=json.dumps(document).encode()
    )
    lines += [f"warning from API Gateway: {warning}" for warning in result.get("warnings", [])]
    lines.append(
        f"definition overwritten ({len(document['paths'])} paths, api key required: {settings.api_key_required})"
    )
    if orphans := _drop_orphan_validators(apigw, api_id):
        lines.append(f"removed {orphans} orphaned request validator(s)")
    lines += _deploy(settings, apigw, api_id)
    if settings.api_key_required:
        lines += _ensure_api_key(settings, apigw, api_id)

    url = invoke_url(settings, api_id)
    settings.invoke_url_file.parent.mkdir(parents=True, exist_ok=True)
    settings.invoke_url_file.write_text(url + "\n")
    lines.append(f"invoke URL {url} (stored in {settings.invoke_url_file})")
    if settings.api_invoke_url and settings.api_invoke_url.rstrip("/") != url:
        lines.append(f"WARNING: API_INVOKE_URL={settings.api_invoke_url} overrides the stored URL for clients")
    return lines
