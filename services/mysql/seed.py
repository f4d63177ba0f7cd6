"""Seed generator for the MySQL source: `make seed ROWS=11154 SEED=42` (`python -m services.mysql.seed`).

Produces the three tables of docs/contract.md §1 with the original's dirty forms at realistic rates: fully broken
story-format rows, placeholder descriptions, `User Info Error`, k/M follower counts, trailing spaces, unicode,
truncated descriptions ending in `…` + no-break space, categories in blocks, and users who post many times.

Output is a pure function of (rows, seed): Faker (seeded) builds small vocabularies once, then a single
`random.Random(seed)` draws every row, which keeps a million rows within seconds. Loading uses
`LOAD DATA LOCAL INFILE` (the driver's bulk path) from tab-separated files, one table per worker connection.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import multiprocessing
import os
import random
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from faker import Faker

from pipeline.settings import SOURCE_TABLES, Settings, get_settings

DEFAULT_ROWS = 11154
DEFAULT_SEED = 42
SCHEMA_FILE = Path(__file__).with_name("schema.sql")

CATEGORIES = (
    "art", "beauty", "christmas", "diy-and-crafts", "education", "event-planning", "finance",
    "home-decor", "mens-fashion", "quotes", "tattoos", "travel", "vehicles",
)  # fmt: skip
NO_TITLE = "No Title Data Available"
NO_DESCRIPTION = "No description available"
NO_DESCRIPTION_STORY = "No description available Story format"
UNTITLED = "Untitled"
USER_INFO_ERROR = "User Info Error"
NO_TAGS = "N,o, ,T,a,g,s, ,A,v,a,i,l,a,b,l,e"
IMAGE_SRC_ERROR = "Image src error."
STORY_FORMAT = "multi-video(story page format)"

# Rates, per post (the original has a few percent of broken rows).
BROKEN_ROW_RATE = 0.03
PLACEHOLDER_DESCRIPTION_RATE = 0.012
UNTITLED_DESCRIPTION_RATE = 0.008
NO_TITLE_RATE = 0.004
VIDEO_RATE = 0.07
TRUNCATED_DESCRIPTION_RATE = 0.35
TRAILING_SPACE_NAME_RATE = 0.04
POSTS_PER_POSTER = 6
POSTS_PER_USER = 5

PIN_COLUMNS = (
    "index", "unique_id", "title", "description", "poster_name", "follower_count", "tag_list",
    "is_image_or_video", "image_src", "downloaded", "save_location", "category",
)  # fmt: skip
GEO_COLUMNS = ("ind", "timestamp", "latitude", "longitude", "country")
USER_COLUMNS = ("ind", "first_name", "last_name", "age", "date_joined")
COLUMNS = {"pin": PIN_COLUMNS, "geo": GEO_COLUMNS, "user": USER_COLUMNS}

UNICODE_DECORATIONS = (" ✈️", " ✿◕‿◕✿", " | DIY & Crafts", " ♡", " – Blog", " 🎄", "")
NAME_SUFFIXES = (" Blog", " Studio", " Designs", " Magazine", " | Home Decor Ideas", " Official", " Co.", "")


@dataclass(frozen=True)
class Vocabulary:
    words: tuple[str, ...]
    sentences: tuple[str, ...]
    tags_by_category: dict[str, tuple[str, ...]]
    countries: tuple[str, ...]


def build_vocabulary(seed: int) -> Vocabulary:
    fake = Faker("en_US")
    fake.seed_instance(seed)
    words = tuple(fake.words(nb=1500, unique=False))
    sentences = tuple(fake.sentence(nb_words=12).rstrip(".") for _ in range(3000))
    tags = {
        category: tuple(
            " ".join(w.capitalize() for w in fake.words(nb=2)) + (f" {category.split('-')[0].title()}" if i % 3 else "")
            for i in range(120)
        )
        for category in CATEGORIES
    }
    from faker.providers.address.en_US import Provider as Address

    return Vocabulary(words, sentences, tags, tuple(Address.countries))


def category_blocks(rows: int, rng: random.Random) -> list[str]:
    """Categories in contiguous blocks of index (the original table is ordered by category)."""
    weights = [rng.uniform(0.6, 1.4) for _ in CATEGORIES]
    total = sum(weights)
    sizes = [math.floor(rows * w / total) for w in weights]
    sizes[-1] += rows - sum(sizes)
    blocks: list[str] = []
    for category, size in zip(CATEGORIES, sizes, strict=True):
        blocks.extend([category] * size)
    return blocks


def format_follower_count(count: int) -> str:
    if count >= 1_000_000:
        return f"{count // 1_000_000}M"
    if count >= 1_000:
        return f"{count // 1_000}k"
    return str(count)


def _follower_count(rng: random.Random) -> int:
    # Long tail: most accounts have thousands to hundreds of thousands, a few have millions (up to ~10M).
    roll = rng.random()
    if roll < 0.02:
        return 0
    return min(int(math.exp(rng.gauss(9.6, 2.2))), 10_500_000)


def _datetime_text(rng: random.Random, first_year: int, last_year: int) -> str:
    start = dt.date(first_year, 1, 1).toordinal()
    day = dt.date.fromordinal(start + rng.randrange(dt.date(last_year + 1, 1, 1).toordinal() - start))
    seconds = rng.randrange(86400)
    return f"{day.isoformat()} {seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _post_time(rng: random.Random) -> str:
    # Years 2015..2022, most 2018..2022.
    return _datetime_text(rng, 2015, 2017) if rng.random() < 0.12 else _datetime_text(rng, 2018, 2022)


def _sig6(value: float) -> float:
    return float(f"{value:.6g}")


def _description(vocab: Vocabulary, rng: random.Random) -> str:
    text = ". ".join(rng.sample(vocab.sentences, rng.randint(1, 3))) + "."
    if rng.random() < TRUNCATED_DESCRIPTION_RATE:
        text = text[: rng.randint(60, 120)].rstrip() + "…\u00a0"
    return text


@dataclass(frozen=True)
class Pools:
    """Everything drawn once per (rows, seed) and shared by all chunks: the categories' blocks, the accounts
    that post (each with a fixed follower count), the people behind user_data, and text to draw posts from."""

    categories: list[str]
    posters: dict[str, list[tuple[str, str]]]
    people: list[tuple[str, str, int, str]]
    titles: list[str]
    descriptions: list[str]
    tag_lists: dict[str, list[str]]
    countries: tuple[str, ...]


def build_pools(rows: int, seed: int) -> Pools:
    vocab = build_vocabulary(seed)
    rng = random.Random(seed)
    fake = Faker("en_US")
    fake.seed_instance(seed + 1)
    firsts = [fake.first_name() for _ in range(600)]
    lasts = [fake.last_name() for _ in range(600)]

    def poster() -> tuple[str, str]:
        name = " ".join(w.capitalize() for w in rng.sample(vocab.words, rng.randint(1, 3)))
        name += rng.choice(NAME_SUFFIXES) + (rng.choice(UNICODE_DECORATIONS) if rng.random() < 0.1 else "")
        if rng.random() < TRAILING_SPACE_NAME_RATE:
            name += " "
        return name, format_follower_count(_follower_count(rng))

    def person() -> tuple[str, str, int, str]:
        age = rng.randint(20, 59) if rng.random() < 0.9 else rng.randint(18, 65)
        return rng.choice(firsts), rng.choice(lasts), age, _datetime_text(rng, 2015, 2017)

    posters_per_category = max(1, rows // POSTS_PER_POSTER // len(CATEGORIES))
    pools = Pools(
        categories=category_blocks(rows, rng),
        posters={c: [poster() for _ in range(posters_per_category)] for c in CATEGORIES},
        people=[person() for _ in range(max(1, rows // POSTS_PER_USER))],
        titles=[rng.choice(vocab.sentences)[: rng.randint(20, 90)].strip() for _ in range(5000)],
        descriptions=[_description(vocab, rng) for _ in range(5000)],
        tag_lists={
            c: [",".join(rng.sample(vocab.tags_by_category[c], rng.randint(4, 9))) for _ in range(400)]
            for c in CATEGORIES
        },
        countries=vocab.countries,
    )
    # Rows are written as tab-separated text without escaping: no pool may contain a tab or newline.
    texts = [*pools.titles, *pools.descriptions, *(n for ps in pools.posters.values() for n, _ in ps)]
    assert not any("\t" in t or "\n" in t for t in texts), "generated text must not contain tabs or newlines"
    return pools


CHUNK = 50_000


def generate_chunk(pools: Pools, seed: int, first: int, last: int) -> Iterator[tuple[tuple, tuple, tuple]]:
    """Rows first..last-1. Each chunk has its own generator, so chunks can be drawn in parallel, identically."""
    rng = random.Random(seed * 1_000_003 + first // CHUNK)
    random_ = rng.random
    choice = rng.choice
    for ind in range(first, last):
        category = pools.categories[ind]
        unique_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        save_location = f"Local save in /data/{category}"
        if random_() < BROKEN_ROW_RATE:
            pin = (ind, unique_id, NO_TITLE, NO_DESCRIPTION_STORY, USER_INFO_ERROR, USER_INFO_ERROR, NO_TAGS,
                   STORY_FORMAT, IMAGE_SRC_ERROR, 0, save_location, category)  # fmt: skip
        else:
            poster_name, follower_count = choice(pools.posters[category])
            roll = random_()
            if roll < PLACEHOLDER_DESCRIPTION_RATE:
                description = NO_DESCRIPTION
            elif roll < PLACEHOLDER_DESCRIPTION_RATE + UNTITLED_DESCRIPTION_RATE:
                description = UNTITLED
            else:
                description = choice(pools.descriptions)
            h = f"{rng.getrandbits(128):032x}"
            image = f"https://i.pinimg.com/originals/{h[:2]}/{h[2:4]}/{h[4:6]}/{h}"
            image += ".png" if random_() < 0.15 else ".jpg"
            pin = (
                ind, unique_id, NO_TITLE if random_() < NO_TITLE_RATE else choice(pools.titles), description,
                poster_name, follower_count, choice(pools.tag_lists[category]),
                "video" if random_() < VIDEO_RATE else "image", image, 1, save_location, category,
            )  # fmt: skip
        geo = (
            ind,
            _post_time(rng),
            _sig6(rng.uniform(-90, 90)),
            _sig6(rng.uniform(-180, 180)),
            choice(pools.countries),
        )
        yield pin, geo, (ind, *choice(pools.people))


def generate(rows: int, seed: int) -> Iterator[tuple[tuple, tuple, tuple]]:
    """Yield (pin, geo, user) row tuples, columns in table order (datetimes as `YYYY-MM-DD HH:MM:SS`)."""
    if rows < 1:
        raise ValueError("rows must be at least 1")
    pools = build_pools(rows, seed)
    for first in range(0, rows, CHUNK):
        yield from generate_chunk(pools, seed, first, min(first + CHUNK, rows))


# --- loading -------------------------------------------------------------------------------------------------
_FORK_POOLS: Pools | None = None  # shared with forked workers, copy-on-write


def _write_chunk(job: tuple[int, int, int, str]) -> dict[str, str]:
    seed, first, last, folder = job
    assert _FORK_POOLS is not None
    paths = {table: f"{folder}/{table}-{first:09d}.tsv" for table in COLUMNS}
    handles = [open(paths[table], "w", encoding="utf-8", newline="\n") for table in COLUMNS]  # noqa: SIM115
    try:
        for record in generate_chunk(_FORK_POOLS, seed, first, last):
            for handle, row in zip(handles, record, strict=True):
                handle.write("\t".join(map(str, row)) + "\n")
    finally:
        for handle in handles:
            handle.close()
    return paths


def write_tsv_files(rows: int, seed: int, folder: Path, progress: bool = True) -> Iterator[dict[str, Path]]:
    """Write the tables as tab-separated part files (chunks drawn in parallel on every core); yield each chunk's
    three paths as soon as it is written, in order."""
    global _FORK_POOLS
    started = time.monotonic()
    _FORK_POOLS = build_pools(rows, seed)
    jobs = [(seed, first, min(first + CHUNK, rows), str(folder)) for first in range(0, rows, CHUNK)]
    workers = min(len(jobs), os.cpu_count() or 1)
    try:
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            for done, paths in enumerate(pool.imap(_write_chunk, jobs), start=1):
                yield {table: Path(path) for table, path in paths.items()}
                if progress and (done % 4 == 0 or done == len(jobs)):
                    posts = min(done * CHUNK, rows)
                    print(f"  generated {posts:,}/{rows:,} posts ({time.monotonic() - started:.1f} s)", flush=True)
    finally:
        _FORK_POOLS = None


def connect(settings: Settings, database: str | None = None, **extra):
    """A PyMySQL connection with a clear error naming host:port when the server is unreachable."""
    import pymysql

    try:
        return pymysql.connect(
            host=settings.mysql_host,
            port=settings.mysql_port,
            user=settings.mysql_user,
            password=settings.mysql_password,
            database=database,
            connect_timeout=settings.mysql_connect_timeout,
            charset="utf8mb4",
            **extra,
        )
    except pymysql.err.OperationalError as error:
        raise SystemExit(
            f"Cannot reach MySQL at {settings.mysql_address} as {settings.mysql_user} ({error.args[-1]}). "
            "Is the stack up? Run `make up` (or check MYSQL_HOST/MYSQL_PORT in .env)."
        ) from None


def load_part(settings: Settings, table: str, path: Path) -> None:
    connection = connect(settings, settings.mysql_database, local_infile=True, autocommit=True)
    columns = ", ".join(f"`{c}`" for c in COLUMNS[table])
    with connection, connection.cursor() as cursor:
        cursor.execute("SET unique_checks=0")
        cursor.execute(
            f"LOAD DATA LOCAL INFILE %s INTO TABLE `{SOURCE_TABLES[table]}` CHARACTER SET utf8mb4 "
            f"FIELDS TERMINATED BY '\\t' ESCAPED BY '' LINES TERMINATED BY '\\n' ({columns})",
            (str(path),),
        )
    path.unlink()


def schema_statements() -> list[str]:
    lines = [line for line in SCHEMA_FILE.read_text().splitlines() if not line.lstrip().startswith("--")]
    return [statement.strip() for statement in "\n".join(lines).split(";") if statement.strip()]


def seed_database(settings: Settings, rows: int, seed: int) -> dict[str, int]:
    started = time.monotonic()
    admin = connect(settings, autocommit=True)
    with admin, admin.cursor() as cursor:
        db = settings.mysql_database
        cursor.execute(f"CREATE DATABASE IF NOT EXISTS `{db}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
        cursor.execute(f"USE `{db}`")
        for statement in schema_statements():
            cursor.execute(statement)
    print(f"generating {rows:,} posts with seed {seed} and loading them into {settings.mysql_address} ...", flush=True)
    with tempfile.TemporaryDirectory(prefix="seed-") as tmp:
        # One loader thread per table, fed while later chunks are still being generated.
        loaders = {table: ThreadPoolExecutor(max_workers=1) for table in COLUMNS}
        try:
            pending = [
                loaders[table].submit(load_part, settings, table, path)
                for paths in write_tsv_files(rows, seed, Path(tmp))
                for table, path in paths.items()
            ]
            for future in pending:
                future.result()
        finally:
            for loader in loaders.values():
                loader.shutdown(wait=True, cancel_futures=True)
    counts = table_counts(settings)
    print(f"seeded {', '.join(f'{t}={n:,}' for t, n in counts.items())} in {time.monotonic() - started:.1f} s")
    return counts


def table_counts(settings: Settings) -> dict[str, int]:
    connection = connect(settings, settings.mysql_database)
    with connection, connection.cursor() as cursor:
        counts = {}
        for table in SOURCE_TABLES.values():
            cursor.execute(f"SELECT COUNT(*) FROM `{table}`")
            counts[table] = cursor.fetchone()[0]
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.mysql.seed", description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=DEFAULT_ROWS, help=f"posts to generate (default {DEFAULT_ROWS})")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"random seed (default {DEFAULT_SEED})")
    args = parser.parse_args(argv)
    if args.rows < 1:
        parser.error("--rows must be at least 1")
    seed_database(get_settings(), args.rows, args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
