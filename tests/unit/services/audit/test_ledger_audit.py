"""The ledger audit's comparison (services/audit/ledger_audit.py `compare`): lost, doubled, possibly written."""

from services.audit.ledger_audit import DestinationAudit, Landed, compare

TOPIC = "0a1b2c3d4e5f.pin"


def acked(row, partition, offset):
    return {"row": row, "outcome": "acked", "destination": TOPIC, "partition": partition, "offset": offset}


def entry(row, outcome):
    return {"row": row, "outcome": outcome, "destination": TOPIC}


def position(entry_):
    return (entry_["destination"], entry_.get("partition"), entry_.get("offset"))


def landed(*records):
    """(partition, offset, row) per landed line; all within a run's window."""
    at = [((TOPIC, p, o), row) for p, o, row in records]
    return Landed(at=at, in_window=list(at))


def audit(entries, what_landed):
    result = DestinationAudit("batch", "pin", TOPIC)
    compare(result, entries, what_landed, position)
    return result


def test_every_acknowledged_record_once_is_clean():
    result = audit([acked(7, 0, 0), acked(9, 1, 0)], landed((0, 0, 7), (1, 0, 9)))
    assert result.clean and (result.acked, result.landed, result.lost, result.doubled) == (2, 2, 0, 0)


def test_an_acknowledged_record_missing_is_lost():
    result = audit([acked(7, 0, 0), acked(9, 1, 0)], landed((0, 0, 7)))
    assert (result.lost, result.doubled) == (1, 0) and "row 9" in result.lost_examples[0]


def test_a_position_landed_twice_is_doubled():
    result = audit([acked(7, 0, 0)], landed((0, 0, 7), (0, 0, 7)))
    assert (result.lost, result.doubled) == (0, 1)


def test_a_retry_that_wrote_the_record_twice_is_doubled_though_each_position_landed_once():
    """The first attempt timed out but was written at offset 3; the retry was acknowledged at offset 5."""
    result = audit([acked(7, 0, 5)], landed((0, 3, 7), (0, 5, 7)))
    assert (result.lost, result.doubled) == (0, 1) and "sent 1 times" in result.doubled_examples[0]


def test_a_possibly_written_record_that_landed_once_is_fine_and_counted():
    result = audit([acked(7, 0, 5), entry(7, "possibly_written"), entry(8, "failed")], landed((0, 3, 7), (0, 5, 7)))
    assert result.clean and (result.possibly_written, result.failed, result.possibly_written_landed) == (1, 1, 1)


def test_a_row_sent_twice_legitimately_is_not_doubled():
    result = audit([acked(7, 0, 1), acked(7, 2, 4)], landed((0, 1, 7), (2, 4, 7)))
    assert result.clean


def test_records_of_other_writers_outside_the_runs_windows_are_not_counted():
    extra = ((TOPIC, 0, 0), 7)  # same row, written before the run by someone else
    what = landed((0, 5, 7))
    what.at.insert(0, extra)
    assert audit([acked(7, 0, 5)], what).clean
