"""Confluent REST Proxy compatible HTTP front of Kafka (v2 produce/topics/consumers, v3 produce/clusters).

Confluent's own kafka-rest is on no registry these machines reach, and Karapace is not on PyPI, so the pipeline
carries this implementation: FastAPI (for typed models and the OpenAPI document) on uvicorn with uvloop and
httptools, one process, one shared idempotent `acks=all` producer.

Kafka clients: the producer is librdkafka driven from Rust (`native/`, the Python module `rest_proxy_produce`),
which also parses the JSON of a plain produce body, so a record costs no Python object on its way to the broker
(docs/design/rest_proxy.md). confluent-kafka (librdkafka too) serves metadata, topic configs and the consumer API.
Not kafka-python: its producer costs fifty times the CPU per record, too much for the proxy's targets
(docs/design/rest_proxy.md); it stays the project's client for admin, test consumers and the audit.

Layout (after kafka-rest): `errors.py` the one error table, `models.py` the entities, `parsing.py` media types
and body rules, `v2.py` / `v3.py` the routes per API version, `produce.py` what a v2 produce does (called by its
route and by `fast_path.py`, which answers `POST /topics/{topic}` before FastAPI), `http.py` what the routes share
(the one body reader), `producer.py` the delivery bridge to the native producer, `native/` the Rust crate (the JSON
path and the producer), `kafka_clients.py` client config and metadata, `consumers.py` consumer instances, `app.py`
the application, `service.py` the supervised service.
"""
