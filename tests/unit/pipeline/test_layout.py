"""Where things live in the bucket (pipeline/layout.py, docs/contract.md §3), with literal expectations: the S3 sink's
keys (ObjectKeys.java writes the same), the batch job's input glob and results, the streaming job's tables."""

import pytest

from pipeline.layout import (
    checkpoint_path,
    checkpoints_root,
    count_lines,
    input_glob,
    object_key,
    parse_object_key,
    quarantine_path,
    report_path,
    result_path,
    result_prefix,
    table_path,
)
from pipeline.settings import load_settings


def test_key_layout_matches_spec_and_parses_back():
    key = object_key("0a1b2c3d4e5f.pin", 2, 1000)
    assert key == "topics/0a1b2c3d4e5f.pin/partition=2/0a1b2c3d4e5f.pin+2+0000001000.json"
    assert parse_object_key(key) == ("0a1b2c3d4e5f.pin", 2, 1000)


@pytest.mark.parametrize(
    "key",
    [
        "topics/t/partition=0/t+0+12.json",  # not zero-padded
        "topics/t/partition=1/t+0+0000000000.json",  # folder and file name disagree
        "topics/t/partition=0/_SUCCESS",
    ],
)
def test_foreign_keys_are_not_sink_objects(key):
    assert parse_object_key(key) is None


def test_lines_are_counted_with_or_without_final_newline():
    assert count_lines(b"") == 0
    assert count_lines(b"{}\n{}\n") == 2
    assert count_lines(b"{}\n{}") == 2


def test_input_glob_follows_the_sink_layout():
    assert input_glob("s3a://b", "7e57c0de0001.pin", "pin") == "s3a://b/topics/7e57c0de0001.pin/partition=*/*.json"
    assert input_glob("/data/x/", "7e57c0de0001.geo", "geo") == "/data/x/topics/7e57c0de0001.geo/partition=*/*.json"
    assert input_glob("/d/{topic}/*.json", "7e57c0de0001.user", "user") == "/d/7e57c0de0001.user/*.json"
    assert input_glob("/d/{table}/*.json", "7e57c0de0001.user", "user") == "/d/user/*.json"


def test_batch_results_live_under_analytics():
    settings = load_settings(pipeline_user_id="7e57c0de0001")
    assert settings.bucket_uri == "s3a://user-7e57c0de0001-bucket"
    assert settings.results_uri == "s3a://user-7e57c0de0001-bucket/analytics"
    assert result_prefix("users_joined_by_year") == "analytics/users_joined_by_year/"
    assert result_path("s3a://b/analytics/", "users_joined_by_year") == "s3a://b/analytics/users_joined_by_year"
    assert quarantine_path("/r", "geo") == "/r/quarantine/geo"
    assert report_path("/r/") == "/r/report.html"


def test_stream_tables_live_under_delta():
    settings = load_settings(pipeline_user_id="7e57c0de0001")
    assert settings.warehouse_uri == "s3a://user-7e57c0de0001-bucket/delta"
    assert table_path("s3a://b/delta/", "t") == "s3a://b/delta/t"
    assert checkpoints_root("s3a://b/delta") == "s3a://b/delta/_checkpoints"
    assert checkpoint_path("/c/", "pin") == "/c/pin"
