"""The console's own cost: CPU and RSS of the console process with one open flow page refreshing every second, and
the pipeline's throughput with and without that page.

Goal: under 5 % of one core with the page open; the emulator's throughput unchanged within noise.

    .state/venv/bin/python scripts/bench/bench_console.py [--mode batch|stream] [--rounds 3] [--count 20000]
        [--idle-seconds 30] [--no-record]

Needs the native stack up (`make up`, `make seed`). Runs, in alternation so drift on this shared machine hits both
sides alike: the emulator (--mode's path through the gateway, --burst, --count posts; the batch path's records go
to Kafka, which the console follows by end offsets and the sink's objects, the stream path's to Kinesis, whose
records the console reads one by one to count them) without any page, then the same
with a headless Chromium (Debian's, driven by Playwright) holding `/?refresh=1` open; and, once, the page open on an
idle stack for --idle-seconds (after a warm-up of at least 15 s, until the flow's counts stop moving: a console
started moments ago first reads what the ledger and the streams already hold, every Kinesis record among it; the
warm-up's time and CPU are printed apart). The console's CPU comes from /proc/<pid>/stat (user + system time over the window),
its RSS from /proc/<pid>/status (peak of samples every 0.5 s); the emulator's records/s from its summary line.
--count is large enough for a burst of 10-20 s: the console's sources refresh every 1-3 s, so a window of a second or
two measures whether a refresh fell in it more than what the page costs.
Results go to stdout and, unless --no-record, a row to docs/BENCHMARKS.md under "Console cost" (batch path) or
"Console cost: stream path".
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

from results import REPO, machine, record_row  # scripts/bench/results.py (run as a script)

from pipeline.settings import get_settings
from services.readiness import process_states

TITLES = {"batch": "## Console cost", "stream": "## Console cost: stream path"}
HEADER = """The console process (services/console) with one flow page open in headless Chromium refreshing every second:
its CPU (share of one core) and peak RSS, on an idle stack and while the emulator posts; and the emulator's
throughput ({mode} path through API Gateway, --burst) with the page open over without it, runs alternated
(scripts/bench/bench_console.py --mode {mode}).

| date | machine | idle page: console CPU | under load: console CPU | console RSS peak | emulator records/s without page | with page | ratio with/without |
|---|---|---|---|---|---|---|---|"""
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
WARM_UP_S = 15
CATCH_UP_LIMIT_S = 600


def wait_caught_up(url: str) -> float:
    """Seconds until the flow's Kinesis and ledger counts stop moving (three equal answers 2 s apart): a console
    started moments ago first reads every record the streams hold, which is a one-off cost, not the page's."""
    started, seen = time.monotonic(), []
    while time.monotonic() - started < CATCH_UP_LIMIT_S:
        with urllib.request.urlopen(f"{url}/api/flow", timeout=30) as answer:
            stages = json.load(answer)["stream"]
        seen.append([stage["count"] for stage in stages if stage["name"] in ("emulator", "kinesis")])
        if len(seen) >= 3 and seen[-1] == seen[-2] == seen[-3]:
            break
        time.sleep(2)
    return time.monotonic() - started


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Watch:
    """CPU share and peak RSS of `pid` between start and stop."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self._stop = pid, 0.0, threading.Event()

    def __enter__(self) -> Watch:
        self.cpu0, self.t0 = cpu_seconds(self.pid), time.monotonic()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.5):
            self.peak = max(self.peak, rss_mib(self.pid))

    def __exit__(self, *_exc) -> None:
        self._stop.set()
        self._thread.join()
        self.share = (cpu_seconds(self.pid) - self.cpu0) / (time.monotonic() - self.t0)


def emulate(mode: str, count: int, seed: int) -> float:
    command = [
        sys.executable,
        "-m",
        "emulator",
        "--mode",
        mode,
        "--count",
        str(count),
        "--burst",
        "--seed",
        str(seed),
    ]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=1800, check=False)
    match = re.search(r"\(([\d,.]+) records/s\)", done.stdout)
    if done.returncode != 0 or not match:
        raise SystemExit(f"the emulator failed (exit {done.returncode}):\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return float(match.group(1).replace(",", ""))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=sorted(TITLES), default="batch", help="the emulator's path")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--count", type=int, default=20000)
    parser.add_argument("--idle-seconds", type=float, default=30)
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args(argv)
    settings = get_settings()
    pid = (process_states(settings).get("console") or {}).get("pid")
    if not pid:
        raise SystemExit("the console is not running: make up (native mode) first")
    browser_path = shutil.which("chromium") or shutil.which("chromium-browser")
    if not browser_path:
        raise SystemExit("Chromium is not installed: scripts/install_chromium.sh")
    from playwright.sync_api import sync_playwright

    url = f"{settings.console_url}/?refresh=1"
    without, with_page, load_shares, peaks = [], [], [], []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=browser_path, args=["--no-sandbox"])
        page = browser.new_page()
        page.goto(url)
        cpu0 = cpu_seconds(pid)
        time.sleep(WARM_UP_S)
        caught_up = WARM_UP_S + wait_caught_up(settings.console_url)
        print(
            f"warm-up: the console caught up in {caught_up:.0f} s, {cpu_seconds(pid) - cpu0:.1f} s of CPU", flush=True
        )
        with Watch(pid) as idle:
            time.sleep(args.idle_seconds)
        peaks.append(idle.peak)
        print(f"idle page: console CPU {idle.share:.1%} of a core, RSS peak {idle.peak:.0f} MiB", flush=True)
        page.goto("about:blank")
        for round_ in range(args.rounds):
            without.append(emulate(args.mode, args.count, 1000 + round_))
            page.goto(url)
            with Watch(pid) as loaded:
                with_page.append(emulate(args.mode, args.count, 2000 + round_))
            page.goto("about:blank")
            load_shares.append(loaded.share)
            peaks.append(loaded.peak)
            print(
                f"round {round_ + 1}: {without[-1]:.1f} records/s without the page, {with_page[-1]:.1f} with it; "
                f"console CPU {loaded.share:.1%}",
                flush=True,
            )
        browser.close()
    ratio = statistics.median(with_page) / statistics.median(without)
    row = (
        f"| {datetime.now(UTC):%Y-%m-%d} | {machine()} | {idle.share:.1%} | {statistics.median(load_shares):.1%} | "
        f"{max(peaks):.0f} MiB | {statistics.median(without):.1f} | {statistics.median(with_page):.1f} | {ratio:.2f} |"
    )
    print(row)
    if not args.no_record:
        record_row(TITLES[args.mode], HEADER.format(mode=args.mode), row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
