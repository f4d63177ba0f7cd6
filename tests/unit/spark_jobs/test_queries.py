"""Each docs/contract.md §5 query on tiny hand-made tables, expected results worked out by hand: ties kept, nulls left out,
age boundaries 17/18, 24/25, 35/36, 50/51, years just outside the ranges, medians with interpolation floored."""

from __future__ import annotations

import re
from datetime import datetime

from pyspark.sql import functions as F

from pipeline.layout import QUERY_NAMES
from pipeline.settings import REPO_ROOT
from spark_jobs import queries

PIN = "ind int, category string, poster_name string, follower_count int"
GEO = "ind int, country string, timestamp timestamp"
USER = "ind int, user_name string, age int, date_joined timestamp"
TS = datetime(2020, 1, 1)


def pin(spark, rows):
    return spark.createDataFrame(rows, PIN)


def geo(spark, rows):
    return spark.createDataFrame(rows, GEO)


def user(spark, rows):
    return spark.createDataFrame(rows, USER)


def no_user(spark):
    return user(spark, [])


def test_age_group_boundaries(spark):
    ages = [17, 18, 24, 25, 35, 36, 50, 51, 65, None]
    df = spark.createDataFrame([(a,) for a in ages], "age int").select(queries.age_group(F.col("age")))
    assert [r[0] for r in df.collect()] == [
        None,
        "18-24",
        "18-24",
        "25-35",
        "25-35",
        "36-50",
        "36-50",
        "+50",
        "+50",
        None,
    ]


def test_popular_category_by_country(spark, assert_frames_equal):
    pins = pin(spark, [(1, "art", "p", 1), (2, "art", "p", 1), (3, "beauty", "p", 1), (4, "art", "p", 1),
                       (5, "beauty", "p", 1), (6, "art", "p", 1), (7, None, "p", 1), (8, "travel", "p", 1)])  # fmt: skip
    geos = geo(spark, [(1, "A", TS), (2, "A", TS), (3, "A", TS), (4, "B", TS), (5, "B", TS), (6, None, TS),
                       (7, "A", TS), (9, "A", TS)])  # fmt: skip
    expected = spark.createDataFrame(
        [("A", "art", 2), ("B", "art", 1), ("B", "beauty", 1)], "country string, category string, category_count bigint"
    )
    assert_frames_equal(queries.popular_category_by_country(pins, geos, no_user(spark)), expected, ordered=True)


def test_popular_category_by_year(spark, assert_frames_equal):
    pins = pin(
        spark, [(i, c, "p", 1) for i, c in enumerate(["art", "art", "beauty", "travel", "art", "beauty", "travel"], 1)]
    )
    geos = geo(spark, [
        (1, "A", datetime(2018, 1, 1)), (2, "A", datetime(2018, 12, 31, 23, 59, 59)), (3, "A", datetime(2018, 6, 1)),
        (4, "A", datetime(2017, 12, 31, 23, 59, 59)), (5, "A", datetime(2023, 1, 1)), (6, "A", datetime(2022, 5, 5)),
        (7, "B", datetime(2022, 12, 31)),
    ])  # fmt: skip
    expected = spark.createDataFrame(
        [(2018, "art", 2), (2022, "beauty", 1), (2022, "travel", 1)],
        "post_year int, category string, category_count bigint",
    )
    assert_frames_equal(queries.popular_category_by_year(pins, geos, no_user(spark)), expected, ordered=True)


TOP_PINS = [(1, "c", "alice", 100), (2, "c", "bob", 300), (3, "c", "carol", 300), (4, "c", "bob", 300),
            (5, "c", "dan", None), (6, "c", None, 999), (7, "c", "erin", 50), (8, "c", "fred", 300)]  # fmt: skip


def test_top_user_by_country(spark, assert_frames_equal):
    geos = geo(spark, [(1, "Cuba", TS), (2, "Cuba", TS), (3, "Cuba", TS), (4, "Cuba", TS), (5, "Bulgaria", TS),
                       (6, "Bulgaria", TS), (7, "Bulgaria", TS), (8, "Aruba", TS)])  # fmt: skip
    expected = spark.createDataFrame(
        [("Aruba", "fred", 300), ("Bulgaria", "erin", 50), ("Cuba", "bob", 300), ("Cuba", "carol", 300)],
        "country string, poster_name string, follower_count int",
    )
    assert_frames_equal(queries.top_user_by_country(pin(spark, TOP_PINS), geos, no_user(spark)), expected, ordered=True)


def test_country_with_top_user_breaks_ties_alphabetically(spark, assert_frames_equal):
    geos = geo(spark, [(1, "Cuba", TS), (2, "Cuba", TS), (3, "Cuba", TS), (4, "Cuba", TS), (5, "Albania", TS),
                       (6, "Albania", TS), (7, "Albania", TS), (8, "Aruba", TS)])  # fmt: skip
    # Albania's only measurable poster has 50 (dan: null followers, 999: null poster); Aruba and Cuba tie at 300.
    expected = spark.createDataFrame([("Aruba", 300)], "country string, follower_count int")
    assert_frames_equal(queries.country_with_top_user(pin(spark, TOP_PINS), geos, no_user(spark)), expected)


def test_popular_category_by_age_group(spark, assert_frames_equal):
    rows = [(1, 17, "art"), (2, 18, "art"), (3, 24, "beauty"), (4, 24, "beauty"), (5, 25, "travel"), (6, 35, "art"),
            (7, 36, "art"), (8, 50, "art"), (9, 51, "quotes"), (10, None, "quotes"), (11, 17, "quotes")]  # fmt: skip
    pins = pin(spark, [(i, c, "p", 1) for i, _, c in rows])
    users = user(spark, [(i, f"u{i}", a, TS) for i, a, _ in rows])
    expected = spark.createDataFrame(
        [
            ("+50", "quotes", 1),
            ("18-24", "beauty", 2),
            ("25-35", "art", 1),
            ("25-35", "travel", 1),
            ("36-50", "art", 2),
        ],
        "age_group string, category string, category_count bigint",
    )
    assert_frames_equal(queries.popular_category_by_age_group(pins, geo(spark, []), users), expected, ordered=True)


def test_median_followers_by_age_group(spark, assert_frames_equal):
    rows = [(1, 18, 10), (2, 24, 20), (3, 25, 10), (4, 35, 20), (5, 30, 31), (6, 36, 10), (7, 50, 11), (8, 51, 7),
            (9, 60, None), (10, 17, 1000)]  # fmt: skip
    pins = pin(spark, [(i, "c", "p", f) for i, _, f in rows])
    users = user(spark, [(i, f"u{i}", a, TS) for i, a, _ in rows])
    # 18-24: (10+20)/2 = 15; 25-35: 20; 36-50: 10.5 -> 10; +50: 7 (the null count is left out); 17: no group.
    expected = spark.createDataFrame(
        [("+50", 7), ("18-24", 15), ("25-35", 20), ("36-50", 10)], "age_group string, median_follower_count bigint"
    )
    assert_frames_equal(queries.median_followers_by_age_group(pins, geo(spark, []), users), expected, ordered=True)


def test_users_joined_by_year_counts_distinct_users(spark, assert_frames_equal):
    users = user(spark, [
        (1, "A B", 20, datetime(2015, 1, 1)), (2, "A B", 20, datetime(2015, 1, 1)),  # one user, two posts
        (3, "A B", 21, datetime(2015, 1, 1)),  # another user (age differs)
        (4, "C D", 30, datetime(2014, 12, 31, 23, 59, 59)), (5, "E F", 40, datetime(2020, 12, 31, 23, 59, 59)),
        (6, "G H", 40, datetime(2021, 1, 1)), (7, None, 40, datetime(2016, 1, 1)), (8, "I J", None, datetime(2016, 1, 1)),
    ])  # fmt: skip
    expected = spark.createDataFrame([(2015, 2), (2020, 1)], "join_year int, number_users_joined bigint")
    assert_frames_equal(queries.users_joined_by_year(pin(spark, []), geo(spark, []), users), expected, ordered=True)


JOIN_ROWS = [  # ind, age, join year, follower_count
    (1, 20, 2015, 1), (2, 22, 2015, 2), (3, 60, 2015, 9), (4, 30, 2016, 5), (5, 30, 2016, None), (6, 30, 2014, 1000),
    (7, 30, 2021, 1000), (8, 25, 2020, 100), (9, 35, 2020, 201), (10, 17, 2020, 400),
]  # fmt: skip


def _join_tables(spark):
    pins = pin(spark, [(i, "c", "p", f) for i, _, _, f in JOIN_ROWS])
    users = user(spark, [(i, f"u{i}", a, datetime(y, 6, 1)) for i, a, y, _ in JOIN_ROWS])
    return pins, geo(spark, []), users


def test_median_followers_by_join_year(spark, assert_frames_equal):
    # 2015: 1, 2, 9 -> 2; 2016: 5 (null left out); 2020: 100, 201, 400 -> 201 (age 17 still counts: no age grouping).
    expected = spark.createDataFrame([(2015, 2), (2016, 5), (2020, 201)], "join_year int, median_follower_count bigint")
    assert_frames_equal(queries.median_followers_by_join_year(*_join_tables(spark)), expected, ordered=True)


def test_median_followers_by_join_year_and_age_group(spark, assert_frames_equal):
    # (18-24, 2015): 1, 2 -> 1.5 -> 1; (+50, 2015): 9; (25-35, 2016): 5; (25-35, 2020): 100, 201 -> 150.5 -> 150.
    expected = spark.createDataFrame(
        [("+50", 2015, 9), ("18-24", 2015, 1), ("25-35", 2016, 5), ("25-35", 2020, 150)],
        "age_group string, join_year int, median_follower_count bigint",
    )
    assert_frames_equal(
        queries.median_followers_by_join_year_and_age_group(*_join_tables(spark)), expected, ordered=True
    )


def contract_query_names() -> list[str]:
    """The names in docs/contract.md §5's table, in its order."""
    text = (REPO_ROOT / "docs" / "contract.md").read_text()
    section = text[text.index("## 5. Analytics queries") : text.index("## 6.")]
    return re.findall(r"^\| `(\w+)` \|", section, flags=re.M)


def test_every_contract_query_is_registered():
    # The Airflow venv cannot import spark_jobs (no pyspark there): the DAG's tasks read the names from
    # pipeline.layout, the batch job names its results after its query functions; both are the contract's nine.
    assert len(contract_query_names()) == 9
    assert list(queries.QUERIES) == list(QUERY_NAMES) == contract_query_names()
