"""Docker mode's log copy: what the container runner (services/foreground.py:_copy_output) costs to pass a program's
output to `docker logs` and to the service's log file in the state folder.

    .state/venv/bin/python scripts/bench/bench_log_copy.py [--lines 200000] [--width 160] [--rounds 3] [--no-record]

A producer process writes --lines lines of --width bytes as fast as it can. Each round copies its output twice,
alternated: with the runner's own `_copy_output` (in this process, stdout sent to /dev/null as docker's log driver
would take it, the file in a temporary folder), and with `tee` (coreutils, C: the least any copy to two places
costs) as the baseline. The CPU of the copy is this process's CPU time (user + system, all threads) for the
runner, and the child's for `tee`. Results: CPU microseconds per line, the ratio runner/tee, and what the runner
costs in % of one core at 1,000 lines/s. Unless --no-record, a row goes to docs/BENCHMARKS.md under "Docker-mode
log copy".
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from results import machine, record_row  # scripts/bench/results.py (run as a script)

from services.foreground import _copy_output

TITLE = "## Docker-mode log copy"
HEADER = """In Docker mode each container's runner copies the program's output to the container's stdout (`docker logs`)
and to `<state>/logs/<service>.log`, so `make logs` and the console read the same files in both modes
(services/foreground.py). CPU per line of that copy against coreutils `tee` doing the same on the same lines,
rounds alternated (scripts/bench/bench_log_copy.py).

| date (UTC) | lines x bytes | runner copy CPU per line | `tee` CPU per line | ratio runner/tee | runner at 1,000 lines/s | machine |
|---|---|---|---|---|---|---|
"""
PRODUCER = """
import sys
line = b"x" * (int(sys.argv[2]) - 1) + b"\\n"
out = sys.stdout.buffer
for _ in range(int(sys.argv[1])):
    out.write(line)
out.flush()
"""


def producer(lines: int, width: int, stdout) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", PRODUCER, str(lines), str(width)], stdout=stdout)


def runner_copy(lines: int, width: int, folder: Path) -> float:
    """CPU seconds this process spends in `_copy_output` on the producer's whole output."""
    log, rotated = folder / "runner.log", folder / "runner.log.1"  # past 20 MiB the runner rotates, as in a container
    log.unlink(missing_ok=True), rotated.unlink(missing_ok=True)
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    child = producer(lines, width, subprocess.PIPE)
    os.dup2(devnull, 1)
    try:
        started = time.process_time()
        _copy_output(child.stdout, log)
        spent = time.process_time() - started
    finally:
        os.dup2(saved, 1)
        os.close(saved), os.close(devnull)
    child.wait()
    kept = log.stat().st_size + (rotated.stat().st_size if rotated.exists() else 0)
    assert kept == lines * width, "the runner lost output"
    return spent


def tee_copy(lines: int, width: int, folder: Path) -> float:
    """CPU seconds `tee` alone spends on the same output (its own rusage, from wait4)."""
    log = folder / "tee.log"
    log.unlink(missing_ok=True)
    child = producer(lines, width, subprocess.PIPE)
    with open(os.devnull, "wb") as devnull:
        tee = subprocess.Popen(["tee", str(log)], stdin=child.stdout, stdout=devnull)
    child.stdout.close()
    child.wait()
    _, status, usage = os.wait4(tee.pid, 0)
    tee.returncode = os.waitstatus_to_exitcode(status)
    assert tee.returncode == 0 and log.stat().st_size == lines * width, "tee lost output"
    return usage.ru_utime + usage.ru_stime


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=200_000)
    parser.add_argument("--width", type=int, default=160, help="bytes per line, newline included")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    load = machine()
    runner, tee = [], []
    with tempfile.TemporaryDirectory() as folder:
        for round_ in range(1, args.rounds + 1):
            runner.append(runner_copy(args.lines, args.width, Path(folder)) / args.lines * 1e6)
            tee.append(tee_copy(args.lines, args.width, Path(folder)) / args.lines * 1e6)
            print(f"round {round_}: runner {runner[-1]:.2f} us/line, tee {tee[-1]:.2f} us/line", file=sys.stderr)
    runner_us, tee_us = statistics.median(runner), statistics.median(tee)
    at_1000 = runner_us * 1000 / 1e6 * 100
    print(
        f"runner copy {runner_us:.2f} us CPU/line, tee {tee_us:.2f} us/line, ratio {runner_us / tee_us:.1f}x; "
        f"{at_1000:.2f}% of a core at 1,000 lines/s"
    )
    if not args.no_record:
        date = datetime.now(UTC).strftime("%Y-%m-%d %H:%M")
        record_row(
            TITLE,
            HEADER,
            f"| {date} | {args.lines:,} x {args.width} | {runner_us:.2f} us | {tee_us:.2f} us | "
            f"{runner_us / tee_us:.1f}x | {at_1000:.2f}% of a core | {load} |",
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
