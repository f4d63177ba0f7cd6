"""The streaming job's per-batch transformation cleans exactly like the batch job (same functions, same result) and
carries the Kinesis lineage; records that fail to parse go to the quarantine rows with their lineage."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from pyspark.sql import functions as F

from spark_jobs import cleaning, delta_writer, stream_transforms
from spark_jobs.kinesis_source import SCHEMA
from tests.support import SAMPLES_DIR

ARRIVAL = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)


def kinesis_rows(table: str) -> list[tuple]:
    lines = [line for line in (SAMPLES_DIR / f"original_{table}.jsonl").read_text().splitlines() if line.strip()][:10]
    records = [json.dumps(json.loads(line)).encode() for line in lines] + [b"{broken"]
    return [
        (str(i), data, f"streaming-x-{table}", f"shardId-00000000000{i % 2}", str(1000 + i), ARRIVAL)
        for i, data in enumerate(records)
    ]


@pytest.mark.parametrize("table", ["pin", "geo", "user"])
def test_stream_cleans_like_batch_and_keeps_lineage(spark, assert_frames_equal, table):
    source = spark.createDataFrame(kinesis_rows(table), SCHEMA)
    flagged = stream_transforms.prepare(stream_transforms.kinesis_records(source), table)
    cleaned = stream_transforms.clean_rows(flagged, table)
    assert cleaned.columns == [*cleaning.CLEAN_COLUMNS[table], *stream_transforms.LINEAGE_COLUMNS]

    as_batch = source.select(F.col("data").cast("string").alias("value"))
    expected = cleaning.valid_records(cleaning.parse_and_flag(as_batch, table)).transform(cleaning.clean, table)
    assert_frames_equal(cleaned.select(*cleaning.CLEAN_COLUMNS[table]), expected)

    lineage = {(r.shard_id, r.sequence_number, r.arrival_time) for r in cleaned.collect()}
    assert len(lineage) == 10 and all(t.replace(tzinfo=UTC) == ARRIVAL for _, _, t in lineage)

    [bad] = stream_transforms.quarantine_rows(flagged, table).collect()
    assert (bad.source_table, bad.value, bad.sequence_number) == (table, "{broken", "1010")
    assert bad.reason.startswith("corrupt JSON")
    assert stream_transforms.quarantine_rows(flagged, table).columns == list(stream_transforms.QUARANTINE_COLUMNS)


def test_a_restarted_writer_finds_the_last_batch_its_query_committed():
    mine, other = "stream-pin-q1", "stream-geo-q2"
    newest_first = [
        delta_writer.batch_marker(other, 9),  # another query writing the shared quarantine table
        None,  # a commit without metadata (table creation, a user's OPTIMIZE)
        "not json",
        '{"app": "stream-pin-q1", "batch": "7"}',  # malformed batch id: ignored, not trusted
        delta_writer.batch_marker(mine, 6),
        delta_writer.batch_marker(mine, 5),
    ]
    assert delta_writer.last_committed_batch(newest_first, mine) == 6
    assert delta_writer.last_committed_batch(newest_first, other) == 9
    assert delta_writer.last_committed_batch(newest_first, "stream-user-q3") == -1
    assert delta_writer.last_committed_batch([], mine) == -1
    assert json.loads(delta_writer.batch_marker(mine, 0)) == {"app": mine, "batch": 0}
