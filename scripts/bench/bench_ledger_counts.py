"""What the console's ledger counts cost while the emulator writes at full burst: the console's reader
(`services/console/sources.py:LedgerCounts`, refreshed once a second as the flow page asks) counting each run from
the summary the emulator's ledger rewrites every second, against the same reader parsing every ledger line (the
console before the summaries), in the same command.

    .state/venv/bin/python scripts/bench/bench_ledger_counts.py [--rate 12800] [--seconds 20] [--rounds 2] [--no-record]

A writer process appends entries through the emulator's own `Ledger` at --rate entries a second (the emulator's
full burst through the gateway was about 12,800 records/s, docs/BENCHMARKS.md, console cost) for --seconds; this
process refreshes a reader once a second and measures the CPU time of its refreshes (`time.process_time`: this
process does nothing else). Rounds alternate the two readers, each on a fresh ledger folder. After each round the
reader's counts are checked against the writer's. A row goes to docs/BENCHMARKS.md unless --no-record.
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from results import machine, record_row  # scripts/bench/results.py (run as a script)

from emulator.ledger import Entry, Ledger
from services.console.sources import LedgerCounts

TITLE = "## Console: ledger counts (`python scripts/bench/bench_ledger_counts.py`)"
HEADER = """The console's flow counts the emulator's ledger once a second. CPU of those refreshes (share of one core) while
a writer appends through the emulator's `Ledger` at the emulator's full-burst rate: counting each run from its
summary (`<run>.summary.json`) against parsing every line (the console before the summaries), rounds alternated.

| date (UTC) | entries/s x s | parsing every line: CPU | from summaries: CPU | ratio summaries/lines | counts equal | machine |
|---|---|---|---|---|---|---|"""
DESTINATION = "0a1b2c3d4e5f.pin"


def write(folder: str, rate: float, seconds: float) -> None:
    """Entries at `rate` a second through the emulator's Ledger, in steps of 10 ms, then close (a complete summary)."""
    ledger = Ledger(Path(folder), "bench", "batch", "gateway")
    started, written, row = time.monotonic(), 0, 0
    while (elapsed := time.monotonic() - started) < seconds:
        for _ in range(int(elapsed * rate) - written):
            outcome = "failed" if row % 50 == 0 else "acked"
            ledger.record(Entry("pin", row, DESTINATION, outcome, 1, {"partition": row % 3, "offset": row}, ms=12.5))
            row += 1
        written = row
        time.sleep(0.01)
    ledger.close()


def one_round(use_summaries: bool, rate: float, seconds: float) -> tuple[float, bool]:
    """The reader's CPU share of one core over the writer's run, and whether its final counts equal the writer's."""
    with tempfile.TemporaryDirectory() as folder:
        writer = multiprocessing.Process(target=write, args=(folder, rate, seconds))
        writer.start()
        reader = LedgerCounts(Path(folder), frozenset({DESTINATION}), use_summaries=use_summaries)
        cpu, started = 0.0, time.monotonic()
        while writer.is_alive():
            before = time.process_time()
            reader.refresh()
            cpu += time.process_time() - before
            time.sleep(1.0)
        writer.join()
        wall = time.monotonic() - started
        reader.refresh()
        lines = sum(1 for _ in (Path(folder) / "bench.jsonl").open()) - 1  # minus the run's start line
        total = reader.total("batch", "acked") + reader.total("batch", "failed")
        return cpu / wall, total == lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=12800)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    load = machine()
    shares: dict[bool, list[float]] = {False: [], True: []}
    equal = True
    for number in range(args.rounds):
        for use_summaries in (False, True):
            share, same = one_round(use_summaries, args.rate, args.seconds)
            shares[use_summaries].append(share)
            equal = equal and same
            label = "summaries" if use_summaries else "every line"
            print(f"round {number + 1}: {label}: {share:.2%} of a core; counts equal: {same}", flush=True)
    lines, summaries = statistics.median(shares[False]), statistics.median(shares[True])
    ratio = summaries / lines if lines else float("nan")
    print(f"median: every line {lines:.2%}, summaries {summaries:.2%} of a core ({ratio:.3f}x)")
    if not args.no_record:
        when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M")
        row = (
            f"| {when} | {args.rate:,.0f} x {args.seconds:g} | {lines:.2%} | {summaries:.3%} | {ratio:.3f}x | "
            f"{'yes' if equal else 'NO'} | {load} |"
        )
        record_row(TITLE, HEADER, row)


if __name__ == "__main__":
    main()
