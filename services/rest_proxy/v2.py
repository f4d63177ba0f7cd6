"""Confluent REST Proxy API v2: produce, topic metadata, brokers and the consumer API.

Routes and response shapes follow kafka-rest's v2 resources (ProduceToTopicAction, TopicsResource,
PartitionsResource, BrokersResource, ConsumersResource). Responses are `application/vnd.kafka.v2+json`; a produce
answers 200 with one entry per record, and a client must read each record's `error_code` (null, 1 or 2). What a
produce does is `produce.py`, shared with the ASGI fast path; the routes here only hand it the request.
"""

from __future__ import annotations

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from services.rest_proxy.errors import Error, RestError
from services.rest_proxy.http import KafkaV2Response, error_responses, proxy_of, read_body, request_body, v2_json
from services.rest_proxy.models import (
    V2Brokers,
    V2CommitOffsetsRequest,
    V2CommittedOffset,
    V2ConsumerRecord,
    V2CreateConsumerRequest,
    V2CreateConsumerResponse,
    V2Partition,
    V2ProduceRequest,
    V2ProduceResponse,
    V2Subscription,
    V2SubscriptionResponse,
    V2Topic,
)
from services.rest_proxy.parsing import (
    V2_ACCEPTABLE,
    V2_EMBEDDED,
    V2_GENERIC_MEDIA_TYPES,
    V2_JSON,
    V2_PRODUCE_MEDIA_TYPES,
    check_accept,
    check_v2_body_media_type,
    parse_optional_entity,
    requested_embedded_format,
)
from services.rest_proxy.produce import produce

router = APIRouter(default_response_class=KafkaV2Response, tags=["v2"])
PRODUCE_ERRORS = error_responses(400, 404, 406, 413, 415, 422, 500)
CONSUMER_ERRORS = error_responses(404, 406, 409, 415, 422, 429, 500)
# OpenAPI links: a created instance is what every instance operation addresses (lets fuzzers chain calls).
INSTANCE_LINKS = {
    operation: {
        "operationId": operation,
        "parameters": {"group": "$request.path.group", "instance": "$response.body#/instance_id"},
    }
    for operation in ("subscribe", "getSubscription", "readRecords", "commitOffsets", "unsubscribe", "deleteConsumer")
}


async def _produce(request: Request, topic: str, partition: int | None) -> Response:
    headers = request.headers
    content = await produce(
        proxy_of(request),
        topic,
        partition,
        headers.get("content-type"),
        headers.get("accept"),
        headers.get("content-length"),
        request.receive,
    )
    return Response(content, media_type=V2_JSON)


@router.post(
    "/topics/{topic}",
    summary="Produce records to a topic",
    responses={200: {"model": V2ProduceResponse}, **PRODUCE_ERRORS},
    openapi_extra=request_body(V2ProduceRequest, list(V2_PRODUCE_MEDIA_TYPES)),
)
async def produce_to_topic(topic: str, request: Request) -> Response:
    return await _produce(request, topic, None)


@router.post(
    "/topics/{topic}/partitions/{partition}",
    summary="Produce records to one partition",
    responses={200: {"model": V2ProduceResponse}, **PRODUCE_ERRORS},
    openapi_extra=request_body(V2ProduceRequest, list(V2_PRODUCE_MEDIA_TYPES)),
)
async def produce_to_partition(topic: str, partition: int, request: Request) -> Response:
    if partition < 0:
        raise RestError(Error.PARTITION_NOT_FOUND)
    return await _produce(request, topic, partition)


# --- metadata ------------------------------------------------------------------------------------------------
def _is_internal(topic: str) -> bool:
    return topic.startswith("__")


def _partitions(topic_metadata) -> list[dict[str, object]]:
    partitions = []
    for partition in sorted(topic_metadata.partitions.values(), key=lambda p: p.id):
        in_sync = set(partition.isrs)
        replicas = [{"broker": b, "leader": b == partition.leader, "in_sync": b in in_sync} for b in partition.replicas]
        partitions.append({"partition": partition.id, "leader": partition.leader, "replicas": replicas})
    return partitions


async def _topic_metadata(request: Request, topic: str):
    check_accept(request.headers.get("accept"), V2_ACCEPTABLE)
    metadata = await proxy_of(request).metadata.describe()
    found = metadata.topics.get(topic)
    if found is None or found.error is not None:
        raise RestError(Error.TOPIC_NOT_FOUND)
    return found


@router.get("/", summary="Root resource", responses={200: {"content": {"application/vnd.kafka.v2+json": {}}}})
async def root(request: Request) -> Response:
    check_accept(request.headers.get("accept"), V2_ACCEPTABLE)
    return v2_json({})


@router.get(
    "/topics",
    operation_id="listTopics",
    summary="List topics",
    responses={200: {"model": list[str]}, **error_responses(406, 500)},
)
async def list_topics(request: Request) -> Response:
    check_accept(request.headers.get("accept"), V2_ACCEPTABLE)
    metadata = await proxy_of(request).metadata.describe()
    return v2_json(sorted(name for name in metadata.topics if not _is_internal(name)))


@router.get(
    "/topics/{topic}",
    operation_id="getTopic",
    summary="Topic metadata",
    responses={200: {"model": V2Topic}, **error_responses(404, 406)},
)
async def get_topic(topic: str, request: Request) -> Response:
    found = await _topic_metadata(request, topic)
    configs = await proxy_of(request).metadata.topic_configs(topic)
    return v2_json({"name": topic, "configs": configs, "partitions": _partitions(found)})


@router.get(
    "/topics/{topic}/partitions",
    operation_id="listPartitions",
    summary="Partitions of a topic",
    responses={200: {"model": list[V2Partition]}, **error_responses(404, 406)},
)
async def list_partitions(topic: str, request: Request) -> Response:
    return v2_json(_partitions(await _topic_metadata(request, topic)))


@router.get(
    "/topics/{topic}/partitions/{partition}",
    operation_id="getPartition",
    summary="One partition",
    responses={200: {"model": V2Partition}, **error_responses(404, 406)},
)
async def get_partition(topic: str, partition: int, request: Request) -> Response:
    for item in _partitions(await _topic_metadata(request, topic)):
        if item["partition"] == partition:
            return v2_json(item)
    raise RestError(Error.PARTITION_NOT_FOUND)


@router.get(
    "/brokers",
    operation_id="listBrokers",
    summary="List brokers",
    responses={200: {"model": V2Brokers}, **error_responses(406, 500)},
)
async def list_brokers(request: Request) -> Response:
    check_accept(request.headers.get("accept"), V2_ACCEPTABLE)
    metadata = await proxy_of(request).metadata.describe()
    return v2_json({"brokers": sorted(metadata.brokers)})


# --- consumers -----------------------------------------------------------------------------------------------
async def _entity(request: Request, model):
    """A consumer call's body. Its media type is checked first, also for an empty body: a browser sends a POST
    with no body or a text/plain one cross-site without asking (CSRF); it never sends these types unasked."""
    check_v2_body_media_type(request.headers.get("content-type"))
    with proxy_of(request).in_flight.hold() as held:
        body = await read_body(request.receive, request.headers.get("content-length"), held)
        return parse_optional_entity(model, body)


@router.post(
    "/consumers/{group}",
    summary="Create a consumer instance",
    operation_id="createConsumer",
    responses={200: {"model": V2CreateConsumerResponse, "links": INSTANCE_LINKS}, **CONSUMER_ERRORS},
    openapi_extra=request_body(V2CreateConsumerRequest, sorted(V2_GENERIC_MEDIA_TYPES), required=False),
)
async def create_consumer(group: str, request: Request) -> Response:
    check_accept(request.headers.get("accept"), V2_ACCEPTABLE)
    config = await _entity(request, V2CreateConsumerRequest)
    instance = proxy_of(request).consumers.create(group, config)
    base = str(request.base_url).rstrip("/")
    return v2_json({"instance_id": instance.name, "base_uri": f"{base}/consumers/{group}/instances/{instance.name}"})


@router.delete(
    "/consumers/{group}/instances/{instance}",
    summary="Delete a consumer instance",
    operation_id="deleteConsumer",
    status_code=204,
    responses=error_responses(404),
)
async def delete_consumer(group: str, instance: str, request: Request) -> Response:
    await proxy_of(request).consumers.delete(group, instance)
    return Response(status_code=204)


@router.post(
    "/consumers/{group}/instances/{instance}/subscription",
    summary="Subscribe to topics or a pattern",
    operation_id="subscribe",
    status_code=204,
    responses=CONSUMER_ERRORS,
    openapi_extra=request_body(V2Subscription, sorted(V2_GENERIC_MEDIA_TYPES)),
)
async def subscribe(group: str, instance: str, request: Request) -> Response:
    consumers = proxy_of(request).consumers
    target = consumers.get(group, instance)
    subscription = await _entity(request, V2Subscription)
    await consumers.subscribe(target, subscription)
    return Response(status_code=204)


@router.get(
    "/consumers/{group}/instances/{instance}/subscription",
    summary="Current subscription",
    operation_id="getSubscription",
    responses={200: {"model": V2SubscriptionResponse}, **error_responses(404)},
)
async def get_subscription(group: str, instance: str, request: Request) -> Response:
    target = proxy_of(request).consumers.get(group, instance)
    return v2_json({"topics": list(target.subscription)})


@router.delete(
    "/consumers/{group}/instances/{instance}/subscription",
    summary="Unsubscribe",
    operation_id="unsubscribe",
    status_code=204,
    responses=error_responses(404),
)
async def unsubscribe(group: str, instance: str, request: Request) -> Response:
    consumers = proxy_of(request).consumers
    await consumers.unsubscribe(consumers.get(group, instance))
    return Response(status_code=204)


@router.get(
    "/consumers/{group}/instances/{instance}/records",
    summary="Fetch records",
    operation_id="readRecords",
    responses={200: {"model": list[V2ConsumerRecord]}, **error_responses(404, 406, 500)},
)
async def records(
    group: str,
    instance: str,
    request: Request,
    timeout: int = Query(-1, ge=-1, le=2**31 - 1, description="poll timeout in ms"),
    max_bytes: int = Query(-1, ge=-1, le=2**63 - 1, description="max bytes of keys and values returned"),
) -> Response:
    consumers = proxy_of(request).consumers
    target = consumers.get(group, instance)
    accept = request.headers.get("accept")
    wanted = requested_embedded_format(accept)
    if wanted is not None and wanted != target.format:
        raise RestError(Error.CONSUMER_FORMAT_MISMATCH)
    if wanted is None:
        check_accept(accept, V2_ACCEPTABLE)
    fetched = await consumers.records(target, timeout, max_bytes)
    return v2_json_typed(fetched, target.format)


def v2_json_typed(content: object, fmt: str) -> Response:
    response = v2_json(content)
    response.headers["content-type"] = V2_EMBEDDED.format(format=fmt)
    return response


@router.post(
    "/consumers/{group}/instances/{instance}/offsets",
    summary="Commit offsets (all fetched records when the body is empty)",
    operation_id="commitOffsets",
    responses={200: {"model": list[V2CommittedOffset]}, **CONSUMER_ERRORS},
    openapi_extra=request_body(V2CommitOffsetsRequest, sorted(V2_GENERIC_MEDIA_TYPES), required=False),
)
async def commit_offsets(group: str, instance: str, request: Request) -> Response:
    consumers = proxy_of(request).consumers
    target = consumers.get(group, instance)
    offsets = await _entity(request, V2CommitOffsetsRequest)
    return v2_json(await consumers.commit(target, offsets))
