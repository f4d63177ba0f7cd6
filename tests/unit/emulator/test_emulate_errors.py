"""Nothing is dropped silently: an answer the path cannot read fails its records (written down, with the reason),
an error outside the sends stops the run with a summary and exit code 1, and arguments that would send nothing are
refused."""

import asyncio

import pytest

from emulator import __main__ as emulator_main
from emulator.__main__ import emulate, new_limiter, parse_args
from emulator.sender import Stats
from pipeline.settings import TABLES, load_settings


class FakeSource:
    def row_count(self):
        return 100

    def fetch(self, indices):
        return {table: {i: {"ind": i, "index": i} for i in indices} for table in TABLES}

    def close(self):
        pass


def test_an_unreadable_answer_fails_its_records_with_the_reason(monkeypatch):
    async def unreadable(self, table, destination, rows):
        raise ValueError("Expecting value: line 1 column 1 (char 0)")

    monkeypatch.setattr("emulator.__main__.KafkaRestPath.send", unreadable)
    args = parse_args(["--target", "proxy", "--quiet", "--count", "20", "--burst", "--batch-size", "1"])
    stats = Stats()
    asyncio.run(emulate(load_settings(), args, FakeSource(), "http://127.0.0.1:9", stats, new_limiter(args)))
    assert stats.sent == stats.failed == 20 * len(TABLES) and stats.acked == 0
    assert all(f["possibly_written"] and f["attempts"] == 1 for f in stats.failures), "not retried"


def test_an_error_outside_the_sends_ends_with_the_summary_and_exit_1(monkeypatch, tmp_path, capsys):
    class GoneSource(FakeSource):
        def fetch(self, indices):
            raise ConnectionError("Lost connection to MySQL server during query")

    monkeypatch.setenv("STATE_DIR", str(tmp_path))
    monkeypatch.setenv("PIPELINE_ENV_FILE", "/dev/null")
    monkeypatch.setattr(emulator_main, "Source", lambda settings: GoneSource())
    monkeypatch.setattr(emulator_main, "resolve_base_url", lambda settings, mode, target: ("http://127.0.0.1:9", "x"))
    monkeypatch.setattr(emulator_main, "get_settings", lambda: load_settings(_env_file=None, state_dir=tmp_path))
    assert emulator_main.main(["--count", "5", "--burst", "--quiet"]) == 1
    out, err = capsys.readouterr()
    assert "summary: sent 0 records" in out
    assert "emulator stopped: ConnectionError: Lost connection to MySQL server" in err


@pytest.mark.parametrize(
    ("flags", "message"), [(["--max-attempts", "0"], "--max-attempts"), (["--timeout", "0"], "--timeout")]
)
def test_arguments_that_would_send_nothing_are_refused(flags, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse_args(flags)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
