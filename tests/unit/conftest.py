"""Unit-test fixtures for the Spark jobs: one small local SparkSession for the whole run (JVM start-up is the
slowest part of a Spark test), and a whole-DataFrame comparison (schema and rows, like chispa)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from pyspark.sql import DataFrame, SparkSession

from pipeline.settings import load_settings
from spark_jobs.session import build_spark

SMALL_SPARK = {
    "spark.sql.shuffle.partitions": "2",
    "spark.default.parallelism": "2",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.driver.memory": "768m",
    "spark.sql.adaptive.enabled": "false",
    # Tiny inputs: compiling generated code costs more CPU than interpreting a few rows.
    "spark.sql.codegen.wholeStage": "false",
}


@pytest.fixture(scope="session")
def spark() -> Iterator[SparkSession]:
    session = build_spark("unit-tests", load_settings(), master="local[1]", with_jars=False, extra_conf=SMALL_SPARK)
    yield session
    session.stop()


def _rows(df: DataFrame, ordered: bool) -> list[tuple]:
    rows = [tuple(row) for row in df.collect()]
    return rows if ordered else sorted(rows, key=repr)


@pytest.fixture
def assert_frames_equal() -> Callable[..., None]:
    """`assert_frames_equal(actual, expected, ordered=False)`: same column names and types, same rows."""

    def check(actual: DataFrame, expected: DataFrame, ordered: bool = False) -> None:
        actual_schema = [(f.name, f.dataType.simpleString()) for f in actual.schema.fields]
        expected_schema = [(f.name, f.dataType.simpleString()) for f in expected.schema.fields]
        assert actual_schema == expected_schema
        assert _rows(actual, ordered) == _rows(expected, ordered)

    return check
