"""Confluent REST Proxy API v3 (the subset the pipeline needs): list clusters, get a cluster, produce a record.

Shapes follow kafka-rest's `api/v3/openapi.yaml`: `KafkaClusterList`/`KafkaCluster` resources with `related`
links, and per-record delivery reports whose `error_code` is 200 on success. As in Confluent's streaming produce,
the HTTP status of a produce that reached Kafka is 200 and a failed delivery is reported in the body.
"""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Request
from fastapi.responses import Response

from services.rest_proxy.errors import V3_RECORD_OK, Error, RestError, is_retriable
from services.rest_proxy.http import KafkaV3Response, error_responses, proxy_of, read_body, request_body, v3_json
from services.rest_proxy.models import V3Cluster, V3ClusterList, V3ProduceRequest, V3ProduceResponse
from services.rest_proxy.parsing import JSON, V3_ACCEPTABLE, check_accept, media_type, parse_v3_produce

router = APIRouter(prefix="/v3", default_response_class=KafkaV3Response, tags=["v3"])


def _cluster(base: str, cluster_id: str, controller: int | None) -> dict[str, object]:
    url = f"{base}/v3/clusters/{cluster_id}"
    related = {
        name: {"related": f"{url}/{path}"}
        for name, path in (
            ("acls", "acls"),
            ("brokers", "brokers"),
            ("broker_configs", "broker-configs"),
            ("consumer_groups", "consumer-groups"),
            ("topics", "topics"),
            ("partition_reassignments", "topics/-/partitions/-/reassignment"),
        )
    }
    return {
        "kind": "KafkaCluster",
        "metadata": {"self": url, "resource_name": f"crn:///kafka={cluster_id}"},
        "cluster_id": cluster_id,
        "controller": {"related": f"{url}/brokers/{controller}"}
        if controller is not None and controller >= 0
        else None,
        **related,
    }


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


@router.get(
    "/clusters", summary="List clusters", responses={200: {"model": V3ClusterList}, **error_responses(406, 500)}
)
async def list_clusters(request: Request) -> Response:
    check_accept(request.headers.get("accept"), V3_ACCEPTABLE)
    metadata = await proxy_of(request).metadata.describe()
    base = _base(request)
    return v3_json(
        {
            "kind": "KafkaClusterList",
            "metadata": {"self": f"{base}/v3/clusters", "next": None},
            "data": [_cluster(base, metadata.cluster_id, metadata.controller_id)],
        }
    )


async def _require_cluster(request: Request, cluster_id: str) -> str:
    metadata = proxy_of(request).metadata
    known = metadata.cluster_id or (await metadata.describe()).cluster_id
    if cluster_id != known:
        raise RestError(Error.CLUSTER_NOT_FOUND, cluster_id=cluster_id)
    return known


@router.get(
    "/clusters/{cluster_id}", summary="Get a cluster", responses={200: {"model": V3Cluster}, **error_responses(404)}
)
async def get_cluster(cluster_id: str, request: Request) -> Response:
    check_accept(request.headers.get("accept"), V3_ACCEPTABLE)
    metadata = await proxy_of(request).metadata.describe()
    if cluster_id != metadata.cluster_id:
        raise RestError(Error.CLUSTER_NOT_FOUND, cluster_id=cluster_id)
    return v3_json(_cluster(_base(request), cluster_id, metadata.controller_id))


@router.post(
    "/clusters/{cluster_id}/topics/{topic}/records",
    summary="Produce a record",
    responses={200: {"model": V3ProduceResponse}, **error_responses(400, 404, 406, 413, 415, 422, 500)},
    openapi_extra=request_body(V3ProduceRequest, [JSON]),
)
async def produce_record(cluster_id: str, topic: str, request: Request) -> Response:
    proxy = proxy_of(request)
    check_accept(request.headers.get("accept"), V3_ACCEPTABLE)
    if media_type(request.headers.get("content-type")) != JSON:
        raise RestError(Error.UNSUPPORTED_MEDIA_TYPE)
    with proxy.in_flight.hold() as held:
        body = await read_body(request.receive, request.headers.get("content-length"), held)
        held.take_records(1)
        return await _produce_record(request, proxy, cluster_id, topic, body)


async def _produce_record(request: Request, proxy, cluster_id: str, topic: str, body: bytes) -> Response:
    record, key_type, value_type = parse_v3_produce(body, proxy.settings.rest_proxy_max_record_bytes)
    await _require_cluster(request, cluster_id)
    partitions = await proxy.metadata.require_partitions(topic, missing=Error.UNKNOWN_TOPIC_OR_PARTITION)
    if record.partition is not None and record.partition >= partitions:
        raise RestError(Error.PARTITION_NOT_FOUND)
    (delivery,) = await proxy.producer.send(topic, [record])
    if delivery.error is not None:
        failure = Error.KAFKA_RETRIABLE_ERROR if is_retriable(delivery.error) else Error.KAFKA_ERROR
        return v3_json({"error_code": failure.error_code, "message": RestError(failure, delivery.error.str()).message})
    report: dict[str, object] = {
        "error_code": V3_RECORD_OK,
        "cluster_id": cluster_id,
        "topic_name": topic,
        "partition_id": delivery.partition,
        "offset": delivery.offset,
    }
    if delivery.timestamp_ms is not None:
        moment = datetime.fromtimestamp(delivery.timestamp_ms / 1000, tz=UTC)
        report["timestamp"] = moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    if key_type is not None:
        report["key"] = {"type": key_type, "size": len(record.key or b"")}
    if value_type is not None:
        report["value"] = {"type": value_type, "size": len(record.value or b"")}
    return v3_json(report)
