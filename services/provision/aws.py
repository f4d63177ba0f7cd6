"""Provisioning steps `streams` and `api`: the Kinesis streams and the API Gateway front door (docs/contract.md §2).

One code path for LocalStack and a real AWS account: every client comes from `settings.boto3_client_kwargs`, so
the AWS target has no endpoint override and nothing here branches on the emulator, except where the *invoke URL*
of a stage is spelled (AWS has a DNS name per API; an endpoint override has the `/restapis/...` path form).

Why the API is one OpenAPI document sent with `put_rest_api(mode=overwrite)`: a re-run replaces the whole
definition (resources, methods, integrations, models, validators) in one call, so it is idempotent by construction,
never leaves half-updated routes behind, and is exactly the artefact a real account receives. The API itself is
found by name, so re-runs update it instead of creating duplicates; a new deployment then moves the stage.

What the API exposes is `API_SURFACE` (settings): `emulator`, the aws default, only the routes the emulator posts to
(produce to the user's three topics, PutRecord/PutRecords); `full`, the local default, also `/{proxy+}` (the whole
REST proxy API) and the stream list/describe/create/delete routes. On the aws target every resource created here is
tagged `settings.resource_tags`, and the `deprovision_*` functions delete only what has those tags (teardown.py).

The Kinesis integrations follow the AWS tutorial "Create a REST API as an Amazon Kinesis proxy" (mapping templates,
Content-Type header mapping, execution role), with three deliberate differences:
- PutRecords encodes each record with `$input.json('$.records[i].data')` instead of the tutorial's
  `$util.base64Encode($elem.data)`: on AWS an object interpolated from `$input.path` renders as a Java map
  (`{ind=1, ...}`), not JSON, while LocalStack's `base64Encode` JSON-encodes it. `$input.json` is JSON on both,
  matching PutRecord's `$input.json('$.Data')`.
- Client-controlled strings (stream name, partition keys) are escaped with `$util.escapeJavaScript` (see `escaped`),
  so a request cannot add keys to the Kinesis call; the tutorial interpolates them raw.
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
from functools import partial
from typing import Any

import boto3
from botocore.exceptions import ClientError, WaiterError

from pipeline.private import write_private
from pipeline.settings import TABLES, Settings
from services.provision import preflight, teardown
from services.provision.iam import ensure_api_role

STREAM_WAIT = {"Delay": 1, "MaxAttempts": 300}
RECREATE_WAIT = {"Delay": 1, "MaxAttempts": 60}
JSON_11 = "'application/x-amz-json-1.1'"
API_KEY_SCHEME = "api_key"
BODY_VALIDATOR = "validate-body"

# Mapping templates (AWS tutorial "Create a REST API as an Amazon Kinesis proxy"; PutRecords: see module docstring).
# Every client-controlled string is escaped into its JSON string (`escaped`), every other value is rendered by
# `$input.json` (always valid JSON), so no path parameter or body field can add keys to the Kinesis request.
LIST_STREAMS_TEMPLATE = "{}"


def escaped(expression: str) -> str:
    """A VTL expression rendered as the content of a JSON string. `$util.escapeJavaScript` escapes quotes,
    backslashes and control characters, and also `'` as `\\'`, which is not JSON: AWS's documented fix turns it back."""
    return f"""$util.escapeJavaScript({expression}).replaceAll("\\\\'", "'")"""


STREAM_NAME = escaped("$input.params('stream-name')")
STREAM_NAME_TEMPLATE = f"""{{
    "StreamName": "{STREAM_NAME}"
}}"""
CREATE_STREAM_TEMPLATE = f"""{{
    "ShardCount": #if($input.path('$.ShardCount') == '') 5 #else $input.json('$.ShardCount') #end,
    "StreamName": "{STREAM_NAME}"
}}"""
PUT_RECORD_TEMPLATE = f"""{{
    "StreamName": "{STREAM_NAME}",
    "Data": "$util.base64Encode($input.json('$.Data'))",
    "PartitionKey": "{escaped("$input.path('$.PartitionKey')")}"
}}"""
PUT_RECORDS_TEMPLATE = f"""{{
    "StreamName": "{STREAM_NAME}",
    "Records": [
       #foreach($elem in $input.path('$.records'))
          {{
            "Data": "$util.base64Encode($input.json("$.records[$foreach.index].data"))",
            "PartitionKey": "{escaped("$elem.partition-key")}"
          }}#if($foreach.hasNext),#end
        #end
    ]
}}"""

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
    lines = []
    for name in settings.streams:
        lines.append(_ensure_stream(kinesis, name, settings.kinesis_shards))
        if settings.pipeline_target == "aws":  # the local Kinesis store keeps no tags; teardown is for AWS
            kinesis.add_tags_to_stream(StreamName=name, Tags=settings.resource_tags)
    return lines


def deprovision_streams(settings: Settings, dry_run: bool) -> list[str]:
    """Delete the user's streams that carry the project's tags (with `dry_run`, list them)."""
    kinesis = _client(settings, "kinesis")
    found = []
    for name in settings.streams:
        if (summary := _describe_stream(kinesis, name)) is None:
            continue
        tags = {t["Key"]: t["Value"] for t in kinesis.list_tags_for_stream(StreamName=name)["Tags"]}
        what = f"Kinesis stream {name} ({summary.get('OpenShardCount')} open shard(s), {_mode(summary).lower()})"
        found.append(teardown.Found(what, tags, partial(delete_streams, settings, [name], wait=True)))
    return teardown.sweep(settings, dry_run, found)


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


def _mode(summary: dict[str, Any]) -> str:
    return summary.get("StreamModeDetails", {}).get("StreamMode", "PROVISIONED")


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
    mode = _mode(summary)
    open_shards = summary.get("OpenShardCount")
    line = f"{action} {name}: {summary.get('StreamStatus')}, {open_shards} open shard(s), {mode.lower()}"
    if action == "exists" and shards and mode == "PROVISIONED" and open_shards != shards:
        line += f" (KINESIS_SHARDS={shards}; an existing stream is not resharded)"
    return line


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

    def rest_proxy_method(operation_id: str, http_method: str, path: str) -> dict[str, Any]:
        operation: dict[str, Any] = {
            "operationId": operation_id,
            "responses": {"200": {"description": "200 response"}},
            "x-amazon-apigateway-integration": {
                "type": "http_proxy",
                "httpMethod": http_method,
                "uri": f"{settings.rest_proxy_url.rstrip('/')}/{path}",
                "passthroughBehavior": "when_no_match",
                "timeoutInMillis": settings.gateway_timeout_ms,
                "responses": {"default": {"statusCode": "200"}},
            },
        }
        if path == "{proxy}":
            operation["parameters"] = [_path_parameter("proxy")]
            operation["x-amazon-apigateway-integration"]["requestParameters"] = {
                "integration.request.path.proxy": "method.request.path.proxy"
            }
        if security:
            operation["security"] = security
        return operation

    paths: dict[str, Any] = {
        "/streams/{stream-name}/record": {"put": kinesis_method("PutRecord", PUT_RECORD_TEMPLATE, "PutRecordInput")},
        "/streams/{stream-name}/records": {
            "put": kinesis_method("PutRecords", PUT_RECORDS_TEMPLATE, "PutRecordsInput")
        },
    }
    if settings.api_surface == "full":
        paths |= {
            "/{proxy+}": {"x-amazon-apigateway-any-method": rest_proxy_method("RestProxy", "ANY", "{proxy}")},
            "/streams": {"get": kinesis_method("ListStreams", LIST_STREAMS_TEMPLATE)},
            "/streams/{stream-name}": {
                "get": kinesis_method("DescribeStream", STREAM_NAME_TEMPLATE),
                "post": kinesis_method("CreateStream", CREATE_STREAM_TEMPLATE),
                "delete": kinesis_method("DeleteStream", STREAM_NAME_TEMPLATE),
            },
        }
    else:
        # Only what the emulator posts: produce to the user's three topics, each named (no other topic, none of
        # the proxy's consumer API; the proxy itself has no access control), and the two write routes above (the
        # execution role limits them to the user's streams).
        paths |= {
            f"/topics/{topic}": {"post": rest_proxy_method(f"Produce{table.title()}", "POST", f"topics/{topic}")}
            for table, topic in zip(TABLES, settings.topics, strict=True)
        }

    return {
        "openapi": "3.0.1",
        "info": {
            "title": settings.api_name,
            "description": "Pinterest pipeline front door: Kafka REST proxy (/topics) and Kinesis (/streams)",
            "version": "1",
        },
        "paths": paths,
        "components": {
            "schemas": MODELS,
            "securitySchemes": {API_KEY_SCHEME: {"type": "apiKey", "name": "x-api-key", "in": "header"}},
        },
        "x-amazon-apigateway-api-key-source": "HEADER",
        "x-amazon-apigateway-request-validators": {
            BODY_VALIDATOR: {"validateRequestBody": True, "validateRequestParameters": True}
        },
    }


def describe_routes(document: dict[str, Any]) -> list[str]:
    """`VERB /path -> where` for each operation of the document (the dry run's plan)."""
    lines = []
    for path, operations in document["paths"].items():
        for verb, operation in operations.items():
            integration = operation["x-amazon-apigateway-integration"]
            uri = integration["uri"]
            where = f"Kinesis {uri.rpartition('/')[2]}" if integration["type"] == "aws" else uri
            lines.append(
                f"{verb.removeprefix('x-amazon-apigateway-').removesuffix('-method').upper()} {path} -> {where}"
            )
    return lines


def kinesis_actions(settings: Settings) -> list[str]:
    """The Kinesis actions the API's routes call (`kinesis:<Action>`), all the execution role needs on the streams."""
    document = build_openapi(settings, role_arn="")
    uris = [op["x-amazon-apigateway-integration"]["uri"] for ops in document["paths"].values() for op in ops.values()]
    return sorted({f"kinesis:{uri.rpartition('/')[2]}" for uri in uris if ":kinesis:action/" in uri})


# --- REST API, stage, key --------------------------------------------------------------------------------------
def _rest_apis(apigw) -> Iterator[dict[str, Any]]:
    return _pages(apigw, "get_rest_apis")


def _ensure_rest_api(settings: Settings, apigw) -> tuple[str, list[str]]:
    name = settings.api_name
    found = [api for api in _rest_apis(apigw) if api["name"] == name]
    if found:
        found.sort(key=lambda api: api.get("createdDate") or 0)
        adopt(settings, apigw, "restapis", found[0])
        lines = [f"found REST API {name} ({found[0]['id']})"]
        lines += [f"WARNING: another REST API named {name} exists ({api['id']}); not touched" for api in found[1:]]
        return found[0]["id"], lines
    tags = settings.resource_tags
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
        key = apigw.create_api_key(name=name, value=value, enabled=True, tags=settings.resource_tags)
    else:
        adopt(settings, apigw, "apikeys", key)
        if not key.get("enabled", True):
            operation = {"op": "replace", "path": "/enabled", "value": "true"}
            apigw.update_api_key(apiKey=key["id"], patchOperations=[operation])

    plan_name = settings.usage_plan_name
    stage = {"apiId": api_id, "stage": settings.api_stage}
    plan = next((p for p in apigw.get_usage_plans().get("items", []) if p["name"] == plan_name), None)
    if plan is None:
        plan = apigw.create_usage_plan(name=plan_name, apiStages=[stage], tags=settings.resource_tags)
    else:
        adopt(settings, apigw, "usageplans", plan)
        if stage not in [{"apiId": s["apiId"], "stage": s["stage"]} for s in plan.get("apiStages", [])]:
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


def _tag_role(settings: Settings) -> list[str]:
    """On the aws target, tag the execution role so that teardown knows it as the project's."""
    if settings.pipeline_target != "aws":
        return []
    try:
        _client(settings, "iam").tag_role(RoleName=settings.role_name, Tags=teardown.tag_list(settings))
    except ClientError as error:
        if error.response["Error"]["Code"] not in ("AccessDenied", "AccessDeniedException"):
            raise
        return [f"could not tag role {settings.role_name} (no permission): teardown will keep it"]
    return []


def adopt(settings: Settings, apigw, kind: str, item: dict[str, Any]) -> None:
    """On the aws target, tag an API Gateway resource found by name that lacks the project's tags (made by an older
    provisioning run), so that teardown knows it. `kind`: restapis, usageplans or apikeys."""
    if settings.pipeline_target == "aws" and not teardown.tagged(item.get("tags", {}), settings):
        arn = f"arn:{apigw.meta.partition}:apigateway:{settings.aws_region}::/{kind}/{item['id']}"
        apigw.tag_resource(resourceArn=arn, tags=settings.resource_tags)


def _by_name(items: Iterable[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [item for item in items if item.get("name") == name]


def _pages(apigw, operation: str, **kwargs: Any) -> Iterator[dict[str, Any]]:
    for page in apigw.get_paginator(operation).paginate(**kwargs):
        yield from page.get("items", [])


def deprovision_api(settings: Settings, dry_run: bool) -> list[str]:
    """Delete the usage plan, API key, REST API and execution role that carry the project's tags, and the invoke
    URL and key provisioning stored (with `dry_run`, list them)."""
    apigw = _client(settings, "apigateway")
    found = []
    for plan in _by_name(_pages(apigw, "get_usage_plans"), settings.usage_plan_name):
        found.append(
            teardown.Found(
                f"usage plan {plan['name']} ({plan['id']})", plan.get("tags", {}), partial(_delete_plan, apigw, plan)
            )
        )
    for key in _by_name(_pages(apigw, "get_api_keys", nameQuery=settings.api_key_name), settings.api_key_name):
        found.append(
            teardown.Found(
                f"API key {key['name']} ({key['id']})",
                key.get("tags", {}),
                partial(apigw.delete_api_key, apiKey=key["id"]),
            )
        )
    for api in _by_name(_rest_apis(apigw), settings.api_name):
        found.append(
            teardown.Found(
                f"REST API {api['name']} ({api['id']}) and its stages",
                api.get("tags", {}),
                partial(apigw.delete_rest_api, restApiId=api["id"]),
            )
        )
    found += teardown.role(settings, _client(settings, "iam"), settings.role_name)
    lines = teardown.sweep(settings, dry_run, found)
    for path in (settings.invoke_url_file, settings.api_key_file):
        if path.exists():
            if not dry_run:
                path.unlink()
            lines.append(f"{'would remove' if dry_run else 'removed'} {path}")
    return lines


def _delete_plan(apigw, plan: dict[str, Any]) -> None:
    """A usage plan is deleted once no stage uses it."""
    stages = [f"{stage['apiId']}:{stage['stage']}" for stage in plan.get("apiStages", [])]
    if stages:
        operations = [{"op": "remove", "path": "/apiStages", "value": stage} for stage in stages]
        apigw.update_usage_plan(usagePlanId=plan["id"], patchOperations=operations)
    apigw.delete_usage_plan(usagePlanId=plan["id"])


def provision_api(settings: Settings, dry_run: bool) -> list[str]:
    """Create or update the REST API, deploy its stage, store the invoke URL where the emulator finds it."""
    if settings.pipeline_target == "aws" and (problems := preflight.rest_proxy(settings)):
        raise ProvisionError("\n".join(problems))
    name = settings.api_name
    if dry_run:
        lines = [
            f"would ensure execution role {settings.role_name} (trust apigateway.amazonaws.com; Kinesis access)",
            f"would create or overwrite REST API {name} (API_SURFACE={settings.api_surface}): "
            + "; ".join(describe_routes(build_openapi(settings, role_arn="<execution role>"))),
            f"would deploy stage {settings.api_stage} and write the invoke URL to {settings.invoke_url_file}",
        ]
        if settings.api_key_required:
            lines.append(f"would require x-api-key (usage plan {settings.usage_plan_name})")
        return lines

    role_arn, role_line = ensure_api_role(settings, _client(settings, "iam"), kinesis_actions(settings))
    lines = [role_line, *_tag_role(settings)]
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
