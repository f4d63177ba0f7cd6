"""The Spark batch job against an independent engine: DuckDB SQL (tests/support/duckdb_reference.py, written from
docs/contract.md alone) over the same generated topic files (10,000 posts, re-sends and quarantine-bound records included)
must give the same counts and, for every query, the same columns, types and rows as the Parquet the job wrote."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from pipeline import layout
from pipeline.layout import input_glob
from pipeline.settings import TABLES, load_settings
from spark_jobs import batch
from spark_jobs.queries import QUERIES
from tests.support import duckdb_reference
from tests.support.synthetic import write_topic_files

POSTS = 10_000
ARROW_TO_DUCKDB = {"int32": "INTEGER", "int64": "BIGINT", "string": "VARCHAR", "large_string": "VARCHAR"}


@pytest.fixture(scope="module")
def run(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("crosscheck")
    settings = load_settings(pipeline_user_id="7e57c0de0001")
    written = write_topic_files(root / "bucket", settings, posts=POSTS, seed=11)
    summary = batch.run(spark, settings, str(root / "bucket"), str(root / "results"))
    connection = duckdb.connect()
    globs = {t: input_glob(str(root / "bucket"), settings.topic(t), t) for t in TABLES}
    reference_counts = duckdb_reference.tables(connection, globs)
    return {"root": root, "written": written, "summary": summary, "duckdb": connection, "counts": reference_counts}


def test_counts_match(run):
    assert run["summary"]["counts"] == run["counts"]
    for table in TABLES:
        assert run["counts"][table]["read"] == run["written"][table]
        assert run["counts"][table]["rows"] == POSTS
        assert run["counts"][table]["quarantined"] > 0
        assert run["counts"][table]["duplicates_dropped"] > 0


@pytest.mark.parametrize("name", list(QUERIES))
def test_query_matches_duckdb(run, name):
    table = pq.read_table(run["root"] / "results" / name)
    expected = run["duckdb"].sql(duckdb_reference.QUERIES[name])
    assert table.column_names == expected.columns
    assert [ARROW_TO_DUCKDB[str(t)] for t in table.schema.types] == [str(t) for t in expected.types]
    actual_rows = [tuple(row.values()) for row in table.to_pylist()]
    assert actual_rows == expected.fetchall()
    assert actual_rows, f"{name} is empty: the generated data should exercise it"


def test_results_and_report_written(run):
    results = Path(run["root"] / "results")
    assert sorted(p.name for p in (results / "quarantine").iterdir()) == sorted(TABLES)
    page = (results / "report.html").read_text()
    for name in QUERIES:
        assert f'id="{name}"' in page


@pytest.mark.parametrize("table", TABLES)
def test_cleaned_tables_written_are_the_reference_tables(run, table):
    """`<results>/cleaned/<table>/` (which the queries read back, and the console's trace shows) holds exactly
    DuckDB's cleaned, de-duplicated table: the same columns, one row per `ind`, the same values."""
    folder = layout.cleaned_path(str(run["root"] / "results"), table)
    connection = run["duckdb"]
    reference_columns = connection.table(table).columns
    written = f"read_parquet('{folder}/*.parquet')"
    assert sorted(connection.sql(f"SELECT * FROM {written}").columns) == sorted(reference_columns)
    columns = ", ".join(f'"{c}"' for c in reference_columns)
    assert connection.sql(f"SELECT count(*), count(DISTINCT ind) FROM {written}").fetchall() == [(POSTS, POSTS)]
    for left, right in ((written, table), (table, written)):
        extra = connection.sql(f"SELECT {columns} FROM {left} EXCEPT ALL SELECT {columns} FROM {right}").fetchall()
        assert extra == [], f"{table}: rows in {left} only, e.g. {extra[:2]}"
