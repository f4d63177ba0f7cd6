"""Cleaning rules of docs/contract.md §4 as pure `DataFrame -> DataFrame` functions, shared by the batch and streaming jobs.

Why this shape: the batch job (S3 JSON files) and the streaming job (Kinesis records) must clean identically, so
neither owns the rules. Every function here takes and returns a DataFrame, does no I/O and makes no batch-only
assumption (no actions, no ordering, no global aggregates), so both jobs compose the same functions with
`DataFrame.transform`. De-duplication needs an aggregation and lives apart (`drop_duplicate_records`).

Input contract: a DataFrame with a string column `value` holding one record's JSON text; any other columns (file
path, Kinesis shard and sequence number, ...) are carried through untouched. Records are parsed with explicit
all-string schemas, because the JSON producers send numbers either as numbers or as strings; Spark keeps a number
token's text for a string field, so `20` and `"20"` both arrive as "20" and are cast afterwards.

A record that is not a JSON object, has keys another table uses (a pin record in the user topic), lacks a
required field or holds a value that cannot be cast, gets a `quarantine_reason` and is split off by
`quarantined_records`; `valid_records` keeps the rest.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import reduce

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import StringType, StructField, StructType

# Source field names per topic, in the order the original emulator sends them (docs/contract.md §1).
RAW_FIELDS: dict[str, tuple[str, ...]] = {
    "pin": (
        "index",
        "unique_id",
        "title",
        "description",
        "poster_name",
        "follower_count",
        "tag_list",
        "is_image_or_video",
        "image_src",
        "downloaded",
        "save_location",
        "category",
    ),
    "geo": ("ind", "timestamp", "latitude", "longitude", "country"),
    "user": ("ind", "first_name", "last_name", "age", "date_joined"),
}
RAW_SCHEMAS: dict[str, StructType] = {
    table: StructType([StructField(name, StringType()) for name in fields]) for table, fields in RAW_FIELDS.items()
}
# Without these a record cannot be joined or is not the table's record at all.
REQUIRED_FIELDS: dict[str, tuple[str, ...]] = {
    "pin": ("index", "unique_id", "category"),
    "geo": ("ind", "timestamp", "latitude", "longitude", "country"),
    "user": ("ind", "first_name", "last_name", "age", "date_joined"),
}
INTEGER_FIELDS: dict[str, tuple[str, ...]] = {"pin": ("index", "downloaded"), "geo": ("ind",), "user": ("ind", "age")}
DOUBLE_FIELDS: dict[str, tuple[str, ...]] = {"pin": (), "geo": ("latitude", "longitude"), "user": ()}
TIMESTAMP_FIELDS: dict[str, tuple[str, ...]] = {"pin": (), "geo": ("timestamp",), "user": ("date_joined",)}
TIMESTAMP_FORMAT = "yyyy-MM-dd HH:mm:ss"

# Cleaned columns, in docs/contract.md §4 order.
CLEAN_COLUMNS: dict[str, tuple[str, ...]] = {
    "pin": (
        "ind",
        "unique_id",
        "title",
        "description",
        "follower_count",
        "poster_name",
        "tag_list",
        "is_image_or_video",
        "image_src",
        "save_location",
        "category",
    ),
    "geo": ("ind", "country", "coordinates", "timestamp"),
    "user": ("ind", "user_name", "age", "date_joined"),
}

# Values the source uses instead of null (docs/contract.md §1).
PIN_PLACEHOLDERS: dict[str, tuple[str, ...]] = {
    "title": ("No Title Data Available",),
    "description": ("No description available Story format", "No description available", "Untitled"),
    "poster_name": ("User Info Error",),
    "follower_count": ("User Info Error",),
    "tag_list": ("N,o, ,T,a,g,s, ,A,v,a,i,l,a,b,l,e",),
    "image_src": ("Image src error.",),
}
FOLLOWER_COUNT_PATTERN = r"^([0-9]+)([kM]?)$"
INTEGER_PATTERN = r"^-?[0-9]+$"
SAVE_LOCATION_PREFIX = r"^\s*Local save in\s*"

VALUE_COLUMN = "value"
KEYS_COLUMN = "_json_keys"
REASON_COLUMN = "quarantine_reason"


# --- parsing and validation -------------------------------------------------------------------------------------
def parse_records(df: DataFrame, table: str) -> DataFrame:
    """Parse `value` with the table's explicit schema; adds one string column per source field and the JSON keys."""
    record = "_record"
    return (
        df.withColumn(record, F.from_json(VALUE_COLUMN, RAW_SCHEMAS[table]))
        .withColumn(KEYS_COLUMN, F.json_object_keys(VALUE_COLUMN))
        .select(*df.columns, KEYS_COLUMN, *(F.col(f"{record}.{name}").alias(name) for name in RAW_FIELDS[table]))
    )


def _names_where(names: tuple[str, ...], predicate: Callable[[str], Column]) -> Column:
    """Comma-separated names for which `predicate(name)` holds, or null when none does.

    `concat_ws` skips nulls, so it needs no `array_compact`: that is a higher-order function (`filter`), which Spark
    cannot compile, and one such expression keeps the whole cleaning projection out of whole-stage code generation
    (its code is then generated again in every task; docs/design/streaming.md)."""
    hits = F.concat_ws(", ", *(F.when(predicate(name), F.lit(name)) for name in names))
    return F.when(hits != "", hits)


def _any(conditions: list[Column]) -> Column:
    return reduce(lambda left, right: left | right, conditions, F.lit(False))


def _checked_fields(table: str) -> tuple[str, ...]:
    checked = (*INTEGER_FIELDS[table], *DOUBLE_FIELDS[table], *TIMESTAMP_FIELDS[table])
    return tuple(name for name in RAW_FIELDS[table] if name in checked or (table, name) == ("pin", "follower_count"))


def _is_invalid_value(table: str, name: str) -> Column:
    """True when a present value cannot be cast to the field's type (placeholders and empty strings are fine)."""
    value = F.col(name)
    if name in INTEGER_FIELDS[table]:
        invalid = ~value.rlike(INTEGER_PATTERN) | value.try_cast("int").isNull()
    elif name in DOUBLE_FIELDS[table]:
        invalid = value.try_cast("double").isNull()
    elif name in TIMESTAMP_FIELDS[table]:
        invalid = F.try_to_timestamp(value, F.lit(TIMESTAMP_FORMAT)).isNull()
    else:  # pin.follower_count
        is_placeholder = (value == "") | value.isin(*PIN_PLACEHOLDERS["follower_count"])
        invalid = ~is_placeholder & ~value.rlike(FOLLOWER_COUNT_PATTERN)
    return value.isNotNull() & invalid


def flag_invalid_records(df: DataFrame, table: str) -> DataFrame:
    """Add `quarantine_reason`: null for a good record, else the first rule it breaks (checked in this order)."""
    fields, checked = RAW_FIELDS[table], _checked_fields(table)
    keys = F.col(KEYS_COLUMN)
    unexpected_keys = F.array_except(keys, F.array(*map(F.lit, fields)))
    is_missing = {name: F.col(name).isNull() for name in REQUIRED_FIELDS[table]}
    # Cheap boolean test first; the descriptive reason (arrays, strings) is only built for the few bad records.
    is_bad = keys.isNull() | (F.size(unexpected_keys) > 0) | _any(list(is_missing.values()))
    is_bad = is_bad | _any([_is_invalid_value(table, name) for name in checked])
    unexpected = F.array_join(F.sort_array(unexpected_keys), ", ")  # sort_array compiles; array_sort's lambda does not
    missing = _names_where(tuple(is_missing), lambda name: is_missing[name])
    reason = (
        F.when(~is_bad, F.lit(None).cast("string"))
        .when(keys.isNull(), F.lit("corrupt JSON: not a JSON object"))
        .when(unexpected != "", F.concat(F.lit("unexpected fields: "), unexpected))
        .when(missing.isNotNull(), F.concat(F.lit("missing required fields: "), missing))
        .otherwise(F.concat(F.lit("invalid values: "), _names_where(checked, lambda n: _is_invalid_value(table, n))))
    )
    return df.withColumn(REASON_COLUMN, reason)


def valid_records(df: DataFrame) -> DataFrame:
    """Records without a quarantine reason, without the raw text and parse helpers."""
    return df.where(F.col(REASON_COLUMN).isNull()).drop(VALUE_COLUMN, KEYS_COLUMN, REASON_COLUMN)


def quarantined_records(df: DataFrame, table: str) -> DataFrame:
    """Records with a quarantine reason: the raw text, the reason and any carried-through columns."""
    carried = [c for c in df.columns if c not in (*RAW_FIELDS[table], KEYS_COLUMN, VALUE_COLUMN, REASON_COLUMN)]
    return df.where(F.col(REASON_COLUMN).isNotNull()).select(
        VALUE_COLUMN, F.col(REASON_COLUMN).alias("reason"), *carried
    )


# --- value rules -----------------------------------------------------------------------------------------------
def null_empty_strings(df: DataFrame, columns: tuple[str, ...]) -> DataFrame:
    """Empty strings become null."""
    return df.withColumns({c: F.when(F.col(c) != "", F.col(c)) for c in columns})


def null_placeholders(df: DataFrame, placeholders: dict[str, tuple[str, ...]] = PIN_PLACEHOLDERS) -> DataFrame:
    """The source's "no data" texts (`User Info Error`, `No Title Data Available`, ...) become null."""
    return df.withColumns({c: F.when(~F.col(c).isin(*values), F.col(c)) for c, values in placeholders.items()})


def parse_follower_count(df: DataFrame) -> DataFrame:
    """`"437"` -> 437, `"26k"` -> 26000, `"6M"` -> 6000000 as INT; anything else (already null-ed) -> null."""
    text = F.col("follower_count")
    digits = F.regexp_extract(text, FOLLOWER_COUNT_PATTERN, 1).try_cast("bigint")
    multiplier = (
        F.when(F.regexp_extract(text, FOLLOWER_COUNT_PATTERN, 2) == "k", F.lit(1_000))
        .when(F.regexp_extract(text, FOLLOWER_COUNT_PATTERN, 2) == "M", F.lit(1_000_000))
        .otherwise(F.lit(1))
        .cast("bigint")
    )
    parsed = F.when(text.rlike(FOLLOWER_COUNT_PATTERN), F.try_multiply(digits, multiplier).try_cast("int"))
    return df.withColumn("follower_count", parsed)


def cast_integers(df: DataFrame, columns: tuple[str, ...]) -> DataFrame:
    """Numeric text to INT (null when it does not fit)."""
    return df.withColumns({c: F.col(c).try_cast("int") for c in columns})


def cast_timestamps(df: DataFrame, columns: tuple[str, ...]) -> DataFrame:
    """`YYYY-MM-DD HH:MM:SS` text to TIMESTAMP (session time zone; the jobs run in UTC)."""
    return df.withColumns({c: F.try_to_timestamp(F.col(c), F.lit(TIMESTAMP_FORMAT)) for c in columns})


def strip_save_location_prefix(df: DataFrame) -> DataFrame:
    """`Local save in /data/art` -> `/data/art`."""
    return df.withColumn("save_location", F.regexp_replace("save_location", SAVE_LOCATION_PREFIX, ""))


def rename_index(df: DataFrame) -> DataFrame:
    """The pin table calls its key `index`; the others call it `ind`."""
    return df.withColumnRenamed("index", "ind")


def combine_coordinates(df: DataFrame) -> DataFrame:
    """`coordinates = array(latitude, longitude)` as DOUBLEs; drops latitude and longitude."""
    coordinates = F.array(F.col("latitude").try_cast("double"), F.col("longitude").try_cast("double"))
    return df.withColumn("coordinates", coordinates).drop("latitude", "longitude")


def combine_user_name(df: DataFrame) -> DataFrame:
    """`user_name = first_name + " " + last_name`; drops both."""
    return df.withColumn("user_name", F.concat("first_name", F.lit(" "), "last_name")).drop("first_name", "last_name")


def order_columns(df: DataFrame, table: str) -> DataFrame:
    """docs/contract.md §4 column order; drops unused source fields (pin.downloaded), keeps carried-through columns last."""
    cleaned = CLEAN_COLUMNS[table]
    carried = [c for c in df.columns if c not in cleaned and c not in RAW_FIELDS[table]]
    return df.select(*cleaned, *carried)


# --- per-table composition -------------------------------------------------------------------------------------
def clean_pin(df: DataFrame) -> DataFrame:
    text_columns = tuple(c for c in RAW_FIELDS["pin"] if c not in INTEGER_FIELDS["pin"])
    return (
        df.transform(null_empty_strings, text_columns)
        .transform(null_placeholders)
        .transform(parse_follower_count)
        .transform(cast_integers, INTEGER_FIELDS["pin"])
        .transform(strip_save_location_prefix)
        .transform(rename_index)
        .transform(order_columns, "pin")
    )


def clean_geo(df: DataFrame) -> DataFrame:
    return (
        df.transform(null_empty_strings, ("country",))
        .transform(cast_integers, INTEGER_FIELDS["geo"])
        .transform(combine_coordinates)
        .transform(cast_timestamps, TIMESTAMP_FIELDS["geo"])
        .transform(order_columns, "geo")
    )


def clean_user(df: DataFrame) -> DataFrame:
    return (
        df.transform(combine_user_name)
        .transform(cast_integers, INTEGER_FIELDS["user"])
        .transform(cast_timestamps, TIMESTAMP_FIELDS["user"])
        .transform(order_columns, "user")
    )


CLEANERS: dict[str, Callable[[DataFrame], DataFrame]] = {"pin": clean_pin, "geo": clean_geo, "user": clean_user}


def parse_and_flag(df: DataFrame, table: str) -> DataFrame:
    """`value` JSON text -> parsed source fields plus `quarantine_reason`; split with valid/quarantined_records."""
    return df.transform(parse_records, table).transform(flag_invalid_records, table)


def clean(df: DataFrame, table: str) -> DataFrame:
    """Valid parsed records of `table` -> cleaned columns (docs/contract.md §4)."""
    return CLEANERS[table](df)


def drop_duplicate_records(df: DataFrame, key: str = "ind") -> DataFrame:
    """One row per `key`. Re-sent records are identical, so which one survives only matters for conflicting
    records; the smallest row (column order, nulls first) wins so the result is deterministic. Batch only: a
    stream de-duplicates with `dropDuplicatesWithinWatermark` or a Delta MERGE instead."""
    others = [c for c in df.columns if c != key]
    smallest = F.min(F.struct(*others)).alias("_row")
    return df.where(F.col(key).isNotNull()).groupBy(key).agg(smallest).select(key, *(f"_row.{c}" for c in others))
