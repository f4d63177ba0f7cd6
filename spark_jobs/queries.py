"""The nine analytics questions of docs/contract.md §5 over the cleaned, de-duplicated pin, geo and user tables.

Each query is a pure function of the three DataFrames, named like its result folder, returning exactly the contract's
columns with distinct rows sorted by them. Shared semantics live in one helper each: `most_popular` (ties kept),
`median_bigint` (exact percentile_cont(0.5) floored to BIGINT) and `with_age_group` (ages under 18 in no group).
"""

from __future__ import annotations

from collections.abc import Callable

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

POST_YEARS = (2018, 2022)
JOIN_YEARS = (2015, 2020)
AGE_GROUPS = (("18-24", 18, 24), ("25-35", 25, 35), ("36-50", 36, 50))
OLDEST_GROUP = "+50"  # age > 50


def age_group(age: Column) -> Column:
    """`18-24`, `25-35`, `36-50`, `+50`; null for ages under 18 (and null ages)."""
    group = F.when(age > AGE_GROUPS[-1][2], F.lit(OLDEST_GROUP))
    for name, low, high in AGE_GROUPS:
        group = group.when(age.between(low, high), F.lit(name))
    return group


def _finish(df: DataFrame, columns: tuple[str, ...]) -> DataFrame:
    return df.select(*columns).distinct().orderBy(*columns)


def most_popular(df: DataFrame, group: str, item: str, count_name: str) -> DataFrame:
    """Per `group`, the `item`(s) with the most rows; ties are all kept. Rows with a null group or item are out."""
    counts = (
        df.where(F.col(group).isNotNull() & F.col(item).isNotNull())
        .groupBy(group, item)
        .agg(F.count(F.lit(1)).alias(count_name))
    )
    top = counts.withColumn("_top", F.max(count_name).over(Window.partitionBy(group)))
    return _finish(top.where(F.col(count_name) == F.col("_top")), (group, item, count_name))


def median_bigint(column: str) -> Column:
    """Exact median with interpolation (SQL percentile_cont(0.5)), rounded down to BIGINT."""
    return F.floor(F.percentile(F.col(column).cast("double"), F.lit(0.5))).cast("bigint")


def _medians(df: DataFrame, groups: tuple[str, ...]) -> DataFrame:
    kept = df.where(F.col("follower_count").isNotNull())
    for group in groups:
        kept = kept.where(F.col(group).isNotNull())
    measured = kept.groupBy(*groups).agg(median_bigint("follower_count").alias("median_follower_count"))
    return _finish(measured, (*groups, "median_follower_count"))


def _pin_geo(pin: DataFrame, geo: DataFrame) -> DataFrame:
    return pin.join(geo, "ind")


def _pin_user(pin: DataFrame, user: DataFrame) -> DataFrame:
    return pin.join(user, "ind")


def _in_years(year: Column, years: tuple[int, int]) -> Column:
    return year.between(*years)


# --- the nine queries ------------------------------------------------------------------------------------------
def popular_category_by_country(pin: DataFrame, geo: DataFrame, user: DataFrame) -> DataFrame:
    return most_popular(_pin_geo(pin, geo), "country", "category", "category_count")


def popular_category_by_year(pin: DataFrame, geo: DataFrame, user: DataFrame) -> DataFrame:
    posts = _pin_geo(pin, geo).withColumn("post_year", F.year("timestamp"))
    return most_popular(
        posts.where(_in_years(F.col("post_year"), POST_YEARS)), "post_year", "category", "category_count"
    )


def top_user_by_country(pin: DataFrame, geo: DataFrame, user: DataFrame) -> DataFrame:
    posts = _pin_geo(pin, geo).where(
        F.col("country").isNotNull() & F.col("poster_name").isNotNull() & F.col("follower_count").isNotNull()
    )
    top = posts.withColumn("_top", F.max("follower_count").over(Window.partitionBy("country")))
    return _finish(top.where(F.col("follower_count") == F.col("_top")), ("country", "poster_name", "follower_count"))


def country_with_top_user(pin: DataFrame, geo: DataFrame, user: DataFrame) -> DataFrame:
    per_country = top_user_by_country(pin, geo, user).select("country", "follower_count").distinct()
    best = per_country.orderBy(F.col("follower_count").desc(), F.col("country").asc()).limit(1)
    return _finish(best, ("country", "follower_count"))


def popular_category_by_age_group(pin: DataFrame, geo: DataFrame, user: DataFrame) -> DataFrame:
    posts = _pin_user(pin, user).withColumn("age_group", age_group(F.col("age")))
    return most_popular(posts, "age_group", "category", "category_count")


def median_followers_by_age_group(pin: DataFrame, geo: DataFrame, user: DataFrame) -> DataFrame:
    return _medians(_pin_user(pin, user).withColumn("age_group", age_group(F.col("age"))), ("age_group",))


def users_joined_by_year(pin: DataFrame, geo: DataFrame, user: DataFrame) -> DataFrame:
    users = (
        user.select("user_name", "age", "date_joined")
        .dropna()
        .distinct()
        .withColumn("join_year", F.year("date_joined"))
        .where(_in_years(F.col("join_year"), JOIN_YEARS))
    )
    counted = users.groupBy("join_year").agg(F.count(F.lit(1)).alias("number_users_joined"))
    return _finish(counted, ("join_year", "number_users_joined"))


def median_followers_by_join_year(pin: DataFrame, geo: DataFrame, user: DataFrame) -> DataFrame:
    posts = _pin_user(pin, user).withColumn("join_year", F.year("date_joined"))
    return _medians(posts.where(_in_years(F.col("join_year"), JOIN_YEARS)), ("join_year",))


def median_followers_by_join_year_and_age_group(pin: DataFrame, geo: DataFrame, user: DataFrame) -> DataFrame:
    posts = (
        _pin_user(pin, user)
        .withColumn("join_year", F.year("date_joined"))
        .withColumn("age_group", age_group(F.col("age")))
        .where(_in_years(F.col("join_year"), JOIN_YEARS))
    )
    return _medians(posts, ("age_group", "join_year"))


Query = Callable[[DataFrame, DataFrame, DataFrame], DataFrame]
QUERIES: dict[str, Query] = {
    query.__name__: query
    for query in (
        popular_category_by_country,
        popular_category_by_year,
        top_user_by_country,
        country_with_top_user,
        popular_category_by_age_group,
        median_followers_by_age_group,
        users_joined_by_year,
        median_followers_by_join_year,
        median_followers_by_join_year_and_age_group,
    )
}


def run_queries(pin: DataFrame, geo: DataFrame, user: DataFrame) -> dict[str, DataFrame]:
    """Every query's result DataFrame, by contract name (lazy: nothing runs until written or collected)."""
    return {name: query(pin, geo, user) for name, query in QUERIES.items()}
