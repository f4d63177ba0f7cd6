"""Typed request and response entities of the proxy (Confluent kafka-rest's v2 and v3 JSON contract).

Requests are validated straight from the raw body (`Model.model_validate_json`), so a syntax error and a contract
error come out of one pass and are told apart by pydantic's error type (`parsing.py`). The response models exist
for the OpenAPI document; the hot produce path writes its answers with orjson directly.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Json = Any  # an embedded JSON value: object, array, string, number, boolean or null


class _Request(BaseModel):
    # Confluent's Jackson mapper ignores properties it does not know; so do we.
    model_config = ConfigDict(extra="ignore")


# --- v2 produce ----------------------------------------------------------------------------------------------
class V2ProduceRecord(_Request):
    key: Json = Field(None, description="Message key in the embedded format (JSON value, or base64 for binary)")
    value: Json = Field(None, description="Message value in the embedded format (JSON value, or base64 for binary)")
    partition: int | None = Field(None, ge=0, le=2**31 - 1, description="Partition to write to (optional)")


class V2ProduceRequest(_Request):
    records: list[V2ProduceRecord] = Field(..., min_length=1)
    key_schema: str | None = None
    key_schema_id: int | None = None
    value_schema: str | None = None
    value_schema_id: int | None = None


class V2PartitionOffset(BaseModel):
    partition: int | None
    offset: int | None
    error_code: int | None = Field(None, description="null on success; 1 non-retriable, 2 retriable Kafka error")
    error: str | None


class V2ProduceResponse(BaseModel):
    offsets: list[V2PartitionOffset]
    key_schema_id: int | None = None
    value_schema_id: int | None = None


class ErrorMessage(BaseModel):
    error_code: int
    message: str


# --- v2 topics -----------------------------------------------------------------------------------------------
class V2Replica(BaseModel):
    broker: int
    leader: bool
    in_sync: bool


class V2Partition(BaseModel):
    partition: int
    leader: int
    replicas: list[V2Replica]


class V2Topic(BaseModel):
    name: str
    configs: dict[str, str | None]
    partitions: list[V2Partition]


class V2Brokers(BaseModel):
    brokers: list[int]


# --- v2 consumers --------------------------------------------------------------------------------------------
Format = Literal["binary", "json", "avro", "jsonschema", "protobuf"]


class V2CreateConsumerRequest(_Request):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    name: str | None = Field(None, min_length=1, max_length=200, pattern=r"^[A-Za-z0-9._\-]+$")
    id: str | None = Field(None, min_length=1, max_length=200, pattern=r"^[A-Za-z0-9._\-]+$")
    format: Format = "binary"
    auto_offset_reset: Literal["earliest", "latest", "none", "smallest", "largest"] | None = Field(
        None, alias="auto.offset.reset"
    )
    auto_commit_enable: Literal["true", "false"] | None = Field(None, alias="auto.commit.enable")
    fetch_min_bytes: int | None = Field(None, ge=-1, le=2**31 - 1, alias="fetch.min.bytes")
    request_timeout_ms: int | None = Field(None, ge=0, le=2**31 - 1, alias="consumer.request.timeout.ms")


class V2CreateConsumerResponse(BaseModel):
    instance_id: str
    base_uri: str


class V2Subscription(_Request):
    topics: list[str] | None = None
    topic_pattern: str | None = None


class V2SubscriptionResponse(BaseModel):
    topics: list[str]


class V2TopicPartitionOffset(_Request):
    topic: str = Field(..., min_length=1, max_length=249)
    partition: int = Field(..., ge=0, le=2**31 - 1)
    offset: int = Field(..., ge=0, le=2**63 - 1)
    metadata: str | None = None


class V2CommitOffsetsRequest(_Request):
    offsets: list[V2TopicPartitionOffset] | None = None


class V2CommittedOffset(BaseModel):
    topic: str
    partition: int
    consumed: int | None
    committed: int | None


class V2ConsumerRecord(BaseModel):
    topic: str
    key: Json
    value: Json
    partition: int
    offset: int


# --- v3 ------------------------------------------------------------------------------------------------------
V3Type = Literal["BINARY", "JSON", "STRING", "AVRO", "JSONSCHEMA", "PROTOBUF"]


class V3Data(_Request):
    type: V3Type | None = Field(None, description="Embedded format; BINARY (base64) when omitted, as Confluent")
    data: Json = None
    subject: str | None = None
    subject_name_strategy: str | None = None
    schema_id: int | None = None
    schema_version: int | None = None
    schema_: str | None = Field(None, alias="schema")


class V3Header(_Request):
    name: str
    value: str | None = Field(None, description="base64-encoded header value")


class V3ProduceRequest(_Request):
    partition_id: int | None = Field(None, le=2**31 - 1)
    headers: list[V3Header] = []
    key: V3Data | None = None
    value: V3Data | None = None
    timestamp: str | None = Field(None, description="ISO-8601 date-time; broker time when omitted")


class V3DataInfo(BaseModel):
    type: str | None
    size: int


class V3ProduceResponse(BaseModel):
    error_code: int
    message: str | None = None
    cluster_id: str | None = None
    topic_name: str | None = None
    partition_id: int | None = None
    offset: int | None = None
    timestamp: str | None = None
    key: V3DataInfo | None = None
    value: V3DataInfo | None = None


class V3Relationship(BaseModel):
    related: str


class V3ResourceMetadata(BaseModel):
    self: str
    resource_name: str | None = None


class V3Cluster(BaseModel):
    kind: Literal["KafkaCluster"] = "KafkaCluster"
    metadata: V3ResourceMetadata
    cluster_id: str
    controller: V3Relationship | None = None
    acls: V3Relationship
    brokers: V3Relationship
    broker_configs: V3Relationship
    consumer_groups: V3Relationship
    topics: V3Relationship
    partition_reassignments: V3Relationship


class V3CollectionMetadata(BaseModel):
    self: str
    next: str | None = None


class V3ClusterList(BaseModel):
    kind: Literal["KafkaClusterList"] = "KafkaClusterList"
    metadata: V3CollectionMetadata
    data: list[V3Cluster]
