"""The audit's offset arithmetic (no services needed); the key layout it reads is tested in test_layout.py."""

from services.audit.sink_audit import PartitionAudit, compare


def audited(earliest: int, end: int, intervals: list[tuple[int, int]]) -> PartitionAudit:
    entry = PartitionAudit("0a1b2c3d4e5f.pin", 0, earliest, end)
    compare(entry, intervals)
    return entry


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
