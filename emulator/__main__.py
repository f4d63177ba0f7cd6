"""`python -m emulator --mode batch|stream [--count N] [--rate R | --burst] ...` (`make emulate`).

Samples posts from the MySQL source with the original's sequence and posts each post's three rows (pin, geo,
user) to the batch path (Kafka topics through API Gateway or straight to the REST proxy) or to the streaming path
(Kinesis streams through API Gateway). Shows progress, ends with a summary, and exits non-zero when any record
finally failed; failed records are written to a JSON-lines file so nothing is lost silently. All requests share one
adaptive budget (emulator/limiter.py): throttling answers slow the whole emulator down, and the summary says how
far, so a throttling gateway gets fewer requests rather than a retry storm.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Iterator
from pathlib import Path as FilePath

import httpx

from emulator import ledger as ledger_module
from emulator.ledger import Ledger
from emulator.limiter import AdaptiveLimiter
from emulator.sampling import Draw, draws
from emulator.sender import KafkaRestPath, KinesisGatewayPath, Path, RetryPolicy, Stats, deliver, failure_lines
from emulator.source import Source
from pipeline.settings import TABLES, Settings, get_settings

DEFAULT_SEED = 100
FETCH_CHUNK = 500


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m emulator", description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=["batch", "stream"], default="batch")
    parser.add_argument("--count", type=int, default=100, help="posts to send (each is 3 records); 0 = forever")
    pacing = parser.add_mutually_exclusive_group()
    pacing.add_argument("--rate", type=float, help="posts per second (default: the original's random 0-1 s sleep)")
    pacing.add_argument("--burst", action="store_true", help="no sleeping; several records per request")
    parser.add_argument("--batch-size", type=int, default=100, help="records per request in burst mode (max 500)")
    parser.add_argument(
        "--concurrency",
        type=int,
        default=None,
        help="posts in flight, each one request per table (default 1, burst 4); the most the emulator uses",
    )
    parser.add_argument(
        "--no-adapt",
        dest="adapt",
        action="store_false",
        help="keep concurrency and rate fixed when the gateway throttles (429/503, Kinesis or Kafka throttling "
        "codes); by default throttling answers cut both for all requests, retries included, and successes raise "
        "them back",
    )
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"sampling seed (default {DEFAULT_SEED})")
    parser.add_argument(
        "--target",
        choices=["auto", "gateway", "proxy"],
        default="auto",
        help="batch mode: API Gateway invoke URL or the REST proxy (auto: the gateway when provisioned)",
    )
    parser.add_argument("--max-attempts", type=int, default=6, help="attempts per record before it counts as failed")
    parser.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="HTTP timeout per request, seconds (default EMULATOR_TIMEOUT_S, 35: longer than the gateway's and the "
        "proxy's deadlines, so their answer is definitive before the emulator gives up)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    args = parser.parse_args(argv)
    if args.count < 0:
        parser.error("--count must be >= 0")
    if args.rate is not None and args.rate <= 0:
        parser.error("--rate must be > 0")
    if not 1 <= args.batch_size <= 500:
        parser.error("--batch-size must be within 1..500 (Kinesis PutRecords takes at most 500)")
    if args.concurrency is None:
        args.concurrency = 4 if args.burst else 1
    if args.concurrency < 1:
        parser.error("--concurrency must be >= 1")
    if args.max_attempts < 1:
        parser.error("--max-attempts must be >= 1 (1 sends each record once, without retries)")
    if args.timeout is not None and args.timeout <= 0:
        parser.error("--timeout must be > 0")
    return args


def resolve_base_url(settings: Settings, mode: str, target: str) -> tuple[str, str]:
    """(base URL, human label) for the chosen path; a clear error when the gateway is not provisioned."""
    invoke_url = settings.resolved_invoke_url()
    if mode == "batch" and (target == "proxy" or (target == "auto" and not invoke_url)):
        return settings.rest_proxy_url, f"REST proxy {settings.rest_proxy_url}"
    if not invoke_url:
        raise SystemExit(
            "No API Gateway invoke URL: run `make provision` (or `make up`), or set API_INVOKE_URL in .env"
            + ("; or use --target proxy to post straight to the REST proxy." if mode == "batch" else ".")
        )
    return invoke_url, f"API Gateway {invoke_url}"


def destination(settings: Settings, mode: str, table: str) -> str:
    return settings.topic(table) if mode == "batch" else settings.stream(table)


def chunks(iterator: Iterator[Draw], size: int) -> Iterator[list[Draw]]:
    chunk: list[Draw] = []
    for draw in iterator:
        chunk.append(draw)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def new_limiter(args: argparse.Namespace) -> AdaptiveLimiter:
    """The shared budget in requests: each post in flight is one request per table, and so is each post/s."""
    return AdaptiveLimiter(
        max_concurrency=args.concurrency * len(TABLES),
        max_rate=args.rate * len(TABLES) if args.rate else None,
        adapt=args.adapt,
    )


def throttling_summary(limiter: AdaptiveLimiter) -> str:
    """How often the gateway throttled and how far the emulator slowed down for it."""
    if not limiter.throttles:
        return "throttling: none"
    line = f"throttling: {limiter.throttles:,} answer{'' if limiter.throttles == 1 else 's'}"
    if not limiter.adapt:
        return f"{line} (adaptation off: --no-adapt)"
    line += f"; requests in flight went down to {limiter.lowest_concurrency} of {limiter.max_concurrency}"
    if limiter.lowest_rate is not None:
        line += f", send rate to {limiter.lowest_rate:,.1f} requests/s"
    return line


class Progress:
    def __init__(self, stats: Stats, limiter: AdaptiveLimiter, quiet: bool) -> None:
        self.stats = stats
        self.limiter = limiter
        self.quiet = quiet
        self.started = time.monotonic()

    def line(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        s = self.stats
        line = (
            f"sent {s.sent:,}  acked {s.acked:,}  failed {s.failed:,}  retries {s.retries:,}  "
            f"{s.acked / elapsed:,.1f} records/s  ({elapsed:.0f} s)"
        )
        limiter = self.limiter
        if limiter.throttles:
            rate = f", {limiter.rate:,.1f} requests/s" if limiter.rate is not None else ""
            line += f"  throttled {limiter.throttles:,} (allowed {limiter.concurrency} in flight{rate})"
        return line

    async def run(self) -> None:
        while not self.quiet:
            await asyncio.sleep(2)
            print(self.line(), file=sys.stderr, flush=True)


async def emulate(
    settings: Settings,
    args: argparse.Namespace,
    source: Source,
    base_url: str,
    stats: Stats,
    limiter: AdaptiveLimiter,
    ledger: Ledger | None = None,
) -> None:
    row_count = source.row_count()
    api_key = settings.resolved_api_key()
    headers = {"x-api-key": api_key} if api_key else {}
    limits = httpx.Limits(max_connections=args.concurrency * 3, max_keepalive_connections=args.concurrency * 3)
    policy = RetryPolicy(max_attempts=args.max_attempts)
    progress = Progress(stats, limiter, args.quiet)
    reporter = asyncio.create_task(progress.run())
    slots = asyncio.Semaphore(args.concurrency)
    in_flight: set[asyncio.Task] = set()
    errors: list[BaseException] = []  # a post that failed unexpectedly (a bug, not a delivery failure): stop, loudly
    loop = asyncio.get_running_loop()

    def finished(task: asyncio.Task) -> None:
        in_flight.discard(task)
        if not task.cancelled() and task.exception() is not None:
            errors.append(task.exception())

    async def post(path: Path, rows_by_table: dict[str, list[dict]]) -> None:
        try:
            await asyncio.gather(
                *(
                    deliver(path, table, destination(settings, args.mode, table), rows, stats, policy, limiter, ledger)
                    for table, rows in rows_by_table.items()
                )
            )
        finally:
            slots.release()

    async with httpx.AsyncClient(timeout=args.timeout or settings.emulator_timeout_s, limits=limits) as client:
        path_type = KafkaRestPath if args.mode == "batch" else KinesisGatewayPath
        path = path_type(client, base_url, headers)
        group = args.batch_size if args.burst else 1
        sequence = draws(args.seed, row_count, args.count or None)
        started = time.monotonic()
        posted = 0
        for chunk in chunks(sequence, FETCH_CHUNK):
            rows = await loop.run_in_executor(None, source.fetch, [d.index for d in chunk])
            for start in range(0, len(chunk), group):
                batch = chunk[start : start + group]
                if args.rate:
                    await asyncio.sleep(max(0.0, started + posted / args.rate - time.monotonic()))
                elif not args.burst and posted:
                    await asyncio.sleep(batch[0].sleep_seconds)
                await slots.acquire()
                if errors:
                    slots.release()
                    break
                rows_by_table = {table: [rows[table][d.index] for d in batch] for table in TABLES}
                task = asyncio.create_task(post(path, rows_by_table))
                in_flight.add(task)
                task.add_done_callback(finished)
                posted += len(batch)
            if errors:
                break
        if in_flight:
            await asyncio.gather(*in_flight, return_exceptions=True)
    reporter.cancel()
    if errors:
        raise errors[0]


def write_failures(settings: Settings, stats: Stats) -> FilePath | None:
    if not stats.failures:
        return None
    folder = settings.state_dir / "emulator"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"failed-{time.strftime('%Y%m%dT%H%M%S')}.jsonl"
    path.write_text("\n".join(failure_lines(stats)) + "\n")
    return path


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = get_settings()
    base_url, label = resolve_base_url(settings, args.mode, args.target)
    source = Source(settings)
    count = "forever" if args.count == 0 else f"{args.count:,} posts ({args.count * 3:,} records)"
    pacing = "burst" if args.burst else (f"{args.rate:g} posts/s" if args.rate else "original pacing (0-1 s)")
    adapting = "adapting to throttling" if args.adapt else "fixed (--no-adapt)"
    print(
        f"emulating {count} in {args.mode} mode to {label}; {pacing}, concurrency {args.concurrency} {adapting}",
        flush=True,
    )
    started = time.monotonic()
    stats = Stats()
    limiter = new_limiter(args)
    via = "proxy" if base_url == settings.rest_proxy_url else "gateway"
    ledger = Ledger(ledger_module.ledger_dir(settings), ledger_module.new_run_id(), args.mode, via)
    stopped_by = None
    try:
        asyncio.run(emulate(settings, args, source, base_url, stats, limiter, ledger))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        stopped_by = "interrupted"
    except Exception as error:  # e.g. the source database went away: still report what was sent, then exit 1
        stopped_by = f"{type(error).__name__}: {error}"
        print(f"emulator stopped: {stopped_by}", file=sys.stderr)
    finally:
        source.close()
        ledger.close()
    elapsed = time.monotonic() - started
    print(
        f"summary: sent {stats.sent:,} records, acked {stats.acked:,}, failed {stats.failed:,}, "
        f"retries {stats.retries:,} in {elapsed:.1f} s ({stats.acked / max(elapsed, 1e-9):,.1f} records/s)"
    )
    print(throttling_summary(limiter))
    print(f"ledger: {ledger.file_path} (make verify compares it with what landed)")
    failures_file = write_failures(settings, stats)
    if failures_file:
        for failure in stats.failures[:5]:
            print(f"  failed: {failure['destination']}: {failure['reason']}", file=sys.stderr)
        unknown = (
            f" ({stats.possibly_written:,} possibly written: sent, but no definitive answer; not re-sent)"
            if stats.possibly_written
            else ""
        )
        print(f"{stats.failed:,} records failed{unknown}; all of them are in {failures_file}", file=sys.stderr)
        return 1
    return 0 if stats.sent and stopped_by is None else 1


if __name__ == "__main__":
    sys.exit(main())
