"""A post that fails unexpectedly (a bug in a path, not a delivery failure, which is counted per record) stops the
emulator with that error instead of being dropped as "Task exception was never retrieved"."""

import asyncio

import pytest

from emulator.__main__ import emulate, new_limiter, parse_args
from emulator.sender import Stats
from pipeline.settings import TABLES, load_settings


class FakeSource:
    def row_count(self):
        return 100

    def fetch(self, indices):
        return {table: {i: {"ind": i, "index": i} for i in indices} for table in TABLES}


def test_an_unexpected_error_in_a_post_stops_the_run_and_is_raised(monkeypatch):
    calls = []

    async def broken_send(self, table, destination, rows):
        calls.append(table)
        raise ValueError("a bug in the path")

    monkeypatch.setattr("emulator.__main__.KafkaRestPath.send", broken_send)
    args = parse_args(
        ["--target", "proxy", "--quiet", "--count", "500", "--burst", "--batch-size", "1", "--concurrency", "2"]
    )
    with pytest.raises(ValueError, match="a bug in the path"):
        asyncio.run(emulate(load_settings(), args, FakeSource(), "http://127.0.0.1:9", Stats(), new_limiter(args)))
    assert len(calls) <= 4 * len(TABLES), f"{len(calls)} sends: the run went on after the first failed post"
