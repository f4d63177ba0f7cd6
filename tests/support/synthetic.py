"""Generated topic files in the S3 sink's layout, for the cross-check test and the batch benchmark.

Rows come from the project's seed generator (services/mysql/seed.py: realistic placeholders, `26k`/`6M`
follower counts, odd countries, users who post many times). On top of that this module adds what only the wire
produces and the batch job must survive: records re-sent by the emulator, numbers sent as strings, geo fields in
another order, a pin and a geo record in the user topic, a truncated line, a JSON null in a required field,
unparsable values; and a few ages under 18 and join years outside 2015..2020 so the query filters are exercised.
Deterministic for a given (posts, seed).

    write_topic_files(root, settings, posts=10_000, seed=7)  ->  root/topics/<id>.<table>/partition=<p>/*.json
"""

from __future__ import annotations

import random
from pathlib import Path

import orjson

from pipeline.layout import object_key, partition_prefix
from pipeline.settings import Settings
from services.mysql.seed import COLUMNS, generate

RESEND_RATE = 0.08
STRING_NUMBER_RATE = 0.05
RECORDS_PER_FILE = 10_000
DIRTY_EVERY = 1000  # one batch of quarantine-bound records per this many posts


def _dumps(record: dict) -> str:
    return orjson.dumps(record).decode()


def generate_records(posts: int, seed: int) -> dict[str, list[str]]:
    """JSON lines per table, in emulator order: every post once, some re-sent, plus the dirty records above."""
    rng = random.Random(seed)
    lines: dict[str, list[str]] = {"pin": [], "geo": [], "user": []}
    for pin_row, geo_row, user_row in generate(posts, seed):
        pin = dict(zip(COLUMNS["pin"], pin_row, strict=True))
        geo = dict(zip(COLUMNS["geo"], geo_row, strict=True))
        user = dict(zip(COLUMNS["user"], user_row, strict=True))
        index = pin["index"]
        if rng.random() < STRING_NUMBER_RATE:
            pin["index"], user["age"] = str(index), str(user["age"])
        if index % 97 == 0:
            user["age"] = 15 + index % 3
        if index % 89 == 0:
            user["date_joined"] = ("2014", "2021")[index % 2] + "-06-15" + user["date_joined"][10:]
        sends = 2 if rng.random() < RESEND_RATE else 1
        for send in range(sends):
            lines["pin"].append(_dumps(pin))
            # The original sometimes sends geo fields in another order; parsing must not care.
            reordered = {k: geo[k] for k in ("ind", "country", "timestamp", "latitude", "longitude")}
            lines["geo"].append(_dumps(geo if send == 0 else reordered))
            lines["user"].append(_dumps(user))
        if index % DIRTY_EVERY == DIRTY_EVERY - 1:
            lines["user"].append(_dumps(pin))
            lines["user"].append(_dumps(geo))
            lines["pin"].append(_dumps(pin)[:40])
            lines["geo"].append(_dumps({**geo, "ind": posts + index, "country": None}))
            lines["geo"].append(_dumps({**geo, "ind": posts + index, "timestamp": "not a date"}))
            lines["user"].append(_dumps({**user, "ind": posts + index, "age": "twenty"}))
            lines["pin"].append(_dumps({**pin, "index": posts + index, "follower_count": "lots"}))
    return lines


def write_topic_files(
    root: Path, settings: Settings, posts: int = 10_000, seed: int = 7, partitions: int = 3
) -> dict[str, int]:
    """Write the sink layout for `settings`' topics under `root`; returns the number of lines written per table."""
    written = {}
    for table, lines in generate_records(posts, seed).items():
        topic = settings.topic(table)
        for partition in range(partitions):
            part = lines[partition::partitions]
            (root / partition_prefix(topic, partition)).mkdir(parents=True, exist_ok=True)
            for start in range(0, len(part), RECORDS_PER_FILE):
                chunk = part[start : start + RECORDS_PER_FILE]
                (root / object_key(topic, partition, start)).write_text("\n".join(chunk) + "\n", encoding="utf-8")
        written[table] = len(lines)
    return written
