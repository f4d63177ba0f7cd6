"""The audit's offset arithmetic and the Python mirror of the sink's key layout (no services needed)."""

import pytest

from services.audit.__main__ import PartitionAudit, compare
from services.audit.layout import count_lines, object_key, parse_object_key


def audited(earliest: int, end: int, intervals: list[tuple[int, int]]) -> PartitionAudit:
    entry = PartitionAudit("0a1b2c3d4e5f.pin", 0, earliest, end)
    compare(entry, intervals)
    return entry


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


def test_contiguous_objects_are_clean():
    entry = audited(0, 10, [(0, 4), (4, 8), (8, 10)])
    assert entry.clean and entry.missing_count == 0 and entry.duplicated_count == 0


def test_gaps_and_unflushed_tail_are_missing():
    entry = audited(0, 12, [(0, 3), (5, 9)])
    assert entry.missing == [(3, 5), (9, 12)]
    assert entry.missing_count == 5 and not entry.clean


def test_overlapping_objects_are_duplicates():
    entry = audited(0, 10, [(0, 6), (4, 10)])
    assert entry.duplicated == [(4, 6)] and entry.duplicated_count == 2
    assert entry.missing == []


def test_offsets_before_retention_start_are_not_missing_and_past_end_are_unexpected():
    entry = audited(100, 110, [(90, 105), (105, 112)])
    assert entry.missing == [] and entry.duplicated == []
    assert entry.beyond_end == [(110, 112)] and not entry.clean


def test_empty_partition_without_objects_is_clean():
    assert audited(0, 0, []).clean
    assert audited(7, 7, []).clean
