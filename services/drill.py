"""`python -m services.drill` (`make drill ROUNDS=N`): a chaos run on the running stack, ending with the audit.

Each round starts an emulator run (alternately the batch path through API Gateway and the REST proxy to Kafka,
and, when the streaming job runs, the streaming path through API Gateway to Kinesis), kills one randomly chosen
service with SIGKILL while the run is under way, waits until that service is ready again, and waits for the run to
finish. The services to choose from are kafka, connect, s3, localstack, kinesis, rest_proxy, and stream when it
runs. A kill is a crash: supervisord natively, or the container's own supervisor in Docker mode, restarts the
process, and the drill starts it itself if it stays down. At the end comes `make verify`'s audit: every Kafka
offset in S3 once, and the emulator's ledger against S3 and the Delta tables. The report gives rounds, faults,
records sent, acknowledged, possibly written and failed, and lost and doubled.

The stack abstraction (services/stack.py) is the one the integration tests use, so the drill runs in both modes.
Exit status 0 only when nothing was lost or doubled and the offset audit is clean.
"""

from __future__ import annotations

import argparse
import random
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field

from emulator import ledger as ledger_module
from pipeline.settings import Settings
from services.audit import ledger_audit
from services.audit.sink_audit import render as render_offsets
from services.stack import Stack, StackError, current_stack, provision_stack_api, stack_mode, stack_settings

TARGETS = ("kafka", "connect", "s3", "localstack", "kinesis", "rest_proxy", "stream")
SUMMARY = re.compile(r"summary: sent ([\d,]+) records, acked ([\d,]+), failed ([\d,]+)")
POSSIBLY = re.compile(r"\(([\d,]+) possibly written")
LEDGER = re.compile(r"ledger: \S*/([^/\s]+)\.jsonl")


@dataclass
class Round:
    number: int
    mode: str
    service: str
    killed_after_s: float = 0.0
    recovered_s: float = 0.0
    sent: int = 0
    acked: int = 0
    failed: int = 0
    possibly_written: int = 0
    ledger_run: str = ""
    error: str = ""


@dataclass
class Drill:
    rounds: list[Round] = field(default_factory=list)

    def total(self, name: str) -> int:
        return sum(getattr(r, name) for r in self.rounds)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m services.drill", description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2, help="rounds, one kill each (default 2)")
    parser.add_argument("--posts", type=int, default=300, help="posts per round (3 records each; default 300)")
    parser.add_argument("--rate", type=float, default=30.0, help="posts per second during a round (default 30)")
    parser.add_argument("--seed", type=int, default=None, help="seed of the choice of services and kill times")
    parser.add_argument("--only", action="append", choices=TARGETS, help="kill only these services (repeatable)")
    parser.add_argument(
        "--paths",
        choices=["auto", "batch", "stream", "both"],
        default="auto",
        help="ingestion paths to load (auto: both when the streaming job runs, else batch)",
    )
    parser.add_argument("--wait", type=float, default=180.0, help="seconds the final audit waits (default 180)")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.posts < 1 or args.rate <= 0:
        parser.error("--rounds and --posts must be >= 1, --rate > 0")
    return args


def emulator_command(stack: Stack, mode: str, posts: int, rate: float, seed: int) -> tuple[list[str], dict]:
    args = ["--mode", mode, "--count", str(posts), "--rate", str(rate), "--seed", str(seed), "--quiet"]
    settings = stack.settings
    env = {"PIPELINE_USER_ID": settings.pipeline_user_id, "MYSQL_DATABASE": settings.mysql_database}
    return stack.python_command("emulator", *args, env=env)


def run_round(
    stack: Stack, number: int, mode: str, service: str, args: argparse.Namespace, rng: random.Random
) -> Round:
    result = Round(number, mode, service)
    command, env = emulator_command(stack, mode, args.posts, args.rate, rng.randrange(1, 2**31))
    started = time.monotonic()
    emulator = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    run_seconds = args.posts / args.rate
    time.sleep(rng.uniform(0.2, 0.6) * run_seconds)
    result.killed_after_s = time.monotonic() - started
    try:
        stack.kill(service)
        result.recovered_s = _recover(stack, service)
    except StackError as error:
        result.error = str(error).splitlines()[0]
    output, _ = emulator.communicate(timeout=run_seconds + 600)
    if (match := SUMMARY.search(output)) is None:
        result.error = result.error or f"emulator exited {emulator.returncode} without a summary: {output[-300:]}"
        return result
    result.sent, result.acked, result.failed = (int(group.replace(",", "")) for group in match.groups())
    if (possibly := POSSIBLY.search(output)) is not None:
        result.possibly_written = int(possibly.group(1).replace(",", ""))
    if (ledger := LEDGER.search(output)) is not None:
        result.ledger_run = ledger.group(1)
    return result


def _recover(stack: Stack, service: str) -> float:
    """Seconds until the killed service is ready again; starts it when its supervisor did not bring it back."""
    started = time.monotonic()
    deadline = started + 30
    while not stack.running(service) and time.monotonic() < deadline:
        time.sleep(0.5)
    if not stack.running(service):
        stack.start(service)
    stack.wait_ready(service)
    if service == "localstack":  # LocalStack forgets API definitions when it restarts: provision again, as make up
        provision_stack_api()
    return time.monotonic() - started


def final_audit(settings: Settings, runs: list[str], wait: float) -> tuple[bool, ledger_audit.LedgerReport, str]:
    """The offset audit of the user's topics, and the ledger audit of the drill's own emulator runs."""
    reading = ledger_module.load(ledger_module.ledger_dir(settings), runs)
    offsets, report = ledger_audit.verify(settings, wait, settings.warehouse_uri, reading)
    return offsets.clean, report, render_offsets(settings, offsets)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    mode = stack_mode()
    settings = stack_settings(mode)
    stack = current_stack(settings, mode)
    states = stack.states()
    if not states:
        print("the stack is not running: run `make up` first", file=sys.stderr)
        return 2
    job_running = states.get("stream") == "RUNNING"
    if args.paths in ("stream", "both") and not job_running:
        print("the streaming job is not running: start it with `make stream`, or use --paths batch", file=sys.stderr)
        return 2
    streaming = args.paths in ("stream", "both") or (args.paths == "auto" and job_running)
    targets = [t for t in (args.only or TARGETS) if t != "stream" or job_running]
    modes = {"batch": ["batch"], "stream": ["stream"]}.get(args.paths, ["batch", "stream"] if streaming else ["batch"])
    rng = random.Random(args.seed)
    print(
        f"drill: {args.rounds} round(s) on the {mode} stack, {args.posts} posts each at {args.rate:g}/s, "
        f"killing one of {', '.join(targets)}"
        + ("" if streaming else " (the streaming job is not running: batch path only; `make stream` adds it)"),
        flush=True,
    )
    drill = Drill()
    for number in range(1, args.rounds + 1):
        round_ = run_round(stack, number, modes[(number - 1) % len(modes)], rng.choice(targets), args, rng)
        drill.rounds.append(round_)
        print(
            f"round {number}/{args.rounds}: {round_.mode} path, kill -9 {round_.service} after "
            f"{round_.killed_after_s:.1f} s, ready again in {round_.recovered_s:.1f} s; sent {round_.sent}, "
            f"acked {round_.acked}, possibly written {round_.possibly_written}, failed {round_.failed}"
            + (f"; ERROR {round_.error}" if round_.error else ""),
            flush=True,
        )
    print(f"audit (waiting up to {args.wait:.0f} s for records still on their way) ...", flush=True)
    runs = [r.ledger_run for r in drill.rounds if r.ledger_run]
    offsets_clean, report, offsets_text = final_audit(settings, runs, args.wait)
    print(offsets_text)
    print(ledger_audit.render(report))
    faults = {name: sum(1 for r in drill.rounds if r.service == name) for name in targets}
    print(
        f"drill summary: {len(drill.rounds)} rounds, faults "
        + ", ".join(f"{name} x{count}" for name, count in faults.items() if count)
        + f"; records sent {drill.total('sent')}, acked {drill.total('acked')}, possibly written "
        f"{drill.total('possibly_written')}, failed {drill.total('failed')}; lost {report.lost}, doubled "
        f"{report.doubled}"
    )
    errors = [r for r in drill.rounds if r.error]
    return 0 if offsets_clean and report.clean and not errors else 1


if __name__ == "__main__":
    sys.exit(main())
