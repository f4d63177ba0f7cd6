"""The durable S3 store (S3Proxy, filesystem backend) on the running stack: the sink's key layout, listing the way
the audit and Spark list, and objects that survive a kill -9 of the store's process, including an upload that the
kill cut short (it must not show up as an object afterwards)."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import shutil
import time
import uuid
from urllib.parse import quote, urlsplit

import pytest

from pipeline.settings import Settings
from services.provision.s3 import provision_bucket
from services.s3.service import quarantine_dir, ready, s3_client, store_dir
from services.stack import Stack


@pytest.fixture(scope="module")
def store(stack, settings: Settings) -> Settings:
    stack("s3")
    provision_bucket(settings, dry_run=False)
    return settings


def sink_key(settings: Settings, run: str, table: str, partition: int, offset: int) -> str:
    topic = f"{settings.topic(table)}"
    return f"it-{run}/topics/{topic}/partition={partition}/{topic}+{partition}+{offset:010d}.json"


def put_objects(settings: Settings, run: str) -> dict[str, bytes]:
    client = s3_client(settings)
    objects = {}
    for table in ("pin", "geo"):
        for partition in range(2):
            for offset in (0, 7, 1_000_000_123):
                key = sink_key(settings, run, table, partition, offset)
                body = (json.dumps({"table": table, "partition": partition, "offset": offset}) + "\n").encode()
                answer = client.put_object(Bucket=settings.bucket, Key=key, Body=body, ContentType="application/json")
                assert answer["ETag"].strip('"') == hashlib.md5(body).hexdigest()
                objects[key] = body
    return objects


def delete_prefix(settings: Settings, prefix: str) -> None:
    client = s3_client(settings)
    for key in list_keys(settings, prefix):
        client.delete_object(Bucket=settings.bucket, Key=key)


def list_keys(settings: Settings, prefix: str, page_size: int = 1000) -> list[str]:
    pages = s3_client(settings).get_paginator("list_objects_v2")
    config = {"PageSize": page_size}
    return [
        o["Key"]
        for p in pages.paginate(Bucket=settings.bucket, Prefix=prefix, PaginationConfig=config)
        for o in p.get("Contents", [])
    ]


def test_sink_keys_round_trip_and_list_like_s3(store):
    run = uuid.uuid4().hex[:8]
    objects = put_objects(store, run)
    client = s3_client(store)
    for key, body in objects.items():
        got = client.get_object(Bucket=store.bucket, Key=key)
        assert got["Body"].read() == body
        assert got["ETag"].strip('"') == hashlib.md5(body).hexdigest()
    # '+' and '=' survive the round trip, pagination returns every key once in order
    assert list_keys(store, f"it-{run}/", page_size=4) == sorted(objects)
    first = client.list_objects_v2(Bucket=store.bucket, Prefix=f"it-{run}/", MaxKeys=5)
    assert first["IsTruncated"] and first["KeyCount"] == 5 and first["NextContinuationToken"]
    by_topic = client.list_objects_v2(Bucket=store.bucket, Prefix=f"it-{run}/topics/", Delimiter="/")
    assert [p["Prefix"] for p in by_topic["CommonPrefixes"]] == [
        f"it-{run}/topics/{store.topic(t)}/" for t in ("geo", "pin")
    ]
    pin = f"it-{run}/topics/{store.topic('pin')}/"
    by_partition = client.list_objects_v2(Bucket=store.bucket, Prefix=pin, Delimiter="/")
    assert [p["Prefix"] for p in by_partition["CommonPrefixes"]] == [f"{pin}partition=0/", f"{pin}partition=1/"]
    assert "Contents" not in by_partition
    delete_prefix(store, f"it-{run}/")


def test_multipart_upload_assembles_the_parts(store):
    client = s3_client(store, timeout=30)
    key = f"it-{uuid.uuid4().hex[:8]}/multipart+part=1.bin"
    upload = client.create_multipart_upload(Bucket=store.bucket, Key=key)["UploadId"]
    parts = [os.urandom(5 * 1024 * 1024), b"tail"]
    etags = [
        client.upload_part(Bucket=store.bucket, Key=key, UploadId=upload, PartNumber=n, Body=body)["ETag"]
        for n, body in enumerate(parts, start=1)
    ]
    assert list_keys(store, key) == [], "an unfinished multipart upload must not be listed"
    done = client.complete_multipart_upload(
        Bucket=store.bucket,
        Key=key,
        UploadId=upload,
        MultipartUpload={"Parts": [{"PartNumber": n, "ETag": e} for n, e in enumerate(etags, start=1)]},
    )
    assert done["ETag"].strip('"').endswith("-2")
    assert client.get_object(Bucket=store.bucket, Key=key)["Body"].read() == b"".join(parts)
    client.delete_object(Bucket=store.bucket, Key=key)


def _start_slow_upload(settings: Settings, key: str) -> http.client.HTTPConnection:
    """Send the headers and part of the body of a 10 MB PUT, then leave it hanging (the store is killed next)."""
    endpoint = urlsplit(settings.s3_endpoint_url)
    connection = http.client.HTTPConnection(endpoint.hostname, endpoint.port, timeout=10)
    connection.putrequest("PUT", f"/{settings.bucket}/{quote(key, safe='/')}")
    connection.putheader("Content-Length", str(10_000_000))
    connection.endheaders()
    connection.send(b"x" * 1_000_000)
    return connection


def _store_instance(stack: Stack) -> str | None:
    """The id of the store's running instance (native: its pid); fails when it is not running."""
    state = stack.state("s3")
    assert state == "RUNNING", f"s3 is {state}"
    return stack.instance("s3")


def _wait_ready(settings: Settings, timeout: float = 120) -> float:
    started = time.monotonic()
    while True:
        try:
            ready(settings)
            return time.monotonic() - started
        except Exception:
            if time.monotonic() - started > timeout:
                raise
            time.sleep(0.5)


def test_objects_survive_a_kill_9_of_the_store(store, stack_control):
    run = uuid.uuid4().hex[:8]
    objects = put_objects(store, run)
    cut_key = sink_key(store, run, "pin", 0, 42)
    connection = _start_slow_upload(store, cut_key)
    partial = store_dir(store) / store.bucket / cut_key
    deadline = time.monotonic() + 20
    while not list(partial.parent.glob(partial.name + "-*")):  # the store is writing the body to a temporary file
        assert time.monotonic() < deadline, "the store never started writing the slow upload"
        time.sleep(0.2)
    killed = _store_instance(stack_control)
    stack_control.kill("s3")
    connection.close()
    time.sleep(2)  # supervisord restarts an unexpected exit itself; start it if it gave up (or Docker left it exited)
    stack_control.start("s3")
    restart_s = _wait_ready(store)
    assert _store_instance(stack_control) != killed
    keys = list_keys(store, f"it-{run}/")
    assert keys == sorted(objects), f"after the restart the store lists {set(keys) ^ set(objects)} differently"
    client = s3_client(store)
    for key, body in objects.items():
        assert client.get_object(Bucket=store.bucket, Key=key)["Body"].read() == body
    quarantined = quarantine_dir(store) / store.bucket / f"it-{run}"
    assert [p.name.startswith(cut_key.rsplit("/", 1)[1] + "-") for p in quarantined.rglob("*") if p.is_file()] == [
        True
    ], "the upload cut by the kill was not moved aside"
    shutil.rmtree(quarantined)
    delete_prefix(store, f"it-{run}/")
    print(f"s3 store killed with SIGKILL; ready again {restart_s:.1f} s after the restart; {len(keys)} objects intact")


def test_the_maintenance_dags_pruning_deletes_old_sink_objects_in_the_store_and_keeps_each_partitions_newest(stack):
    """The store implements no lifecycle rules (answers 501), so `orchestration.maintenance` deletes what a rule
    would expire, with DeleteObjects, here against the real store. "Old" is reached by running it at a later time."""
    from datetime import UTC, datetime, timedelta

    from botocore.exceptions import ClientError

    from orchestration.maintenance import prune_sink_objects
    from pipeline import layout
    from pipeline.settings import load_settings

    stack("s3")
    settings = load_settings(pipeline_user_id="7e57c0de0de2", s3_topics_retention_days=30)
    provision_bucket(settings, dry_run=False)
    client = s3_client(settings)
    with pytest.raises(ClientError) as refused:
        client.put_bucket_lifecycle_configuration(
            Bucket=settings.bucket,
            LifecycleConfiguration={
                "Rules": [{"ID": "x", "Filter": {"Prefix": "topics/"}, "Status": "Enabled", "Expiration": {"Days": 1}}]
            },
        )
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 501
    keys = [layout.object_key(settings.topic("pin"), partition, start) for partition in (0, 1) for start in range(3)]
    for key in keys:
        client.put_object(Bucket=settings.bucket, Key=key, Body=b'{"ind":1}\n')
    try:
        later = datetime.now(UTC) + timedelta(days=31)
        assert prune_sink_objects(settings, later, dry_run=True).expired == 4
        assert len(list_keys(settings, layout.TOPICS_PREFIX)) == 6
        assert prune_sink_objects(settings, later).deleted == 4
        assert sorted(list_keys(settings, layout.TOPICS_PREFIX)) == sorted(k for k in keys if k.endswith("02.json"))
        assert prune_sink_objects(settings, later).deleted == 0
    finally:
        delete_prefix(settings, layout.TOPICS_PREFIX)
