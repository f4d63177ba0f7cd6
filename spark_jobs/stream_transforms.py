"""The streaming job's transformations, pure `DataFrame -> DataFrame` (docs/conventions.md): the `kinesis` source's
columns become `value` plus the lineage columns `shard_id, sequence_number, arrival_time`, are parsed and cleaned
by the very functions the batch job uses (spark_jobs/cleaning.py), and split into clean rows and the rows to
quarantine, with the reason.

No de-duplication here, deliberately: docs/contract.md §6 asks for every Kinesis record exactly once, and a post the emulator
re-sends is a new Kinesis record (new sequence number). The batch job's `drop_duplicate_records` is for analytics;
readers wanting one row per post apply it (or a MERGE) to the streaming tables.
"""

from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StructType

from spark_jobs import cleaning
from spark_jobs.kinesis_source import SCHEMA as KINESIS_SCHEMA

LINEAGE_COLUMNS = ("shard_id", "sequence_number", "arrival_time")
QUARANTINE_COLUMNS = ("source_table", "value", "reason", *LINEAGE_COLUMNS, "stream")


def kinesis_records(df: DataFrame) -> DataFrame:
    """The source's columns -> `value` (the record's JSON text) plus lineage, the input cleaning.py expects."""
    return df.select(
        F.col("data").cast("string").alias(cleaning.VALUE_COLUMN),
        F.col("shardId").alias("shard_id"),
        F.col("sequenceNumber").alias("sequence_number"),
        F.col("approximateArrivalTimestamp").alias("arrival_time"),
        F.col("stream"),
    )


def prepare(records: DataFrame, table: str) -> DataFrame:
    """`kinesis_records` -> every record parsed, flagged and cleaned in one row-wise projection: the cleaned
    columns, the lineage, and `value` plus `quarantine_reason` (set for records to quarantine, whose cleaned columns
    are then meaningless). The streaming query applies it once, when it starts, so a micro-batch builds no plan in
    Python: building the cleaning plan through py4j and re-analysing it inside foreachBatch cost 2-4 s per batch on
    2 cores. The cleaning functions are row-wise and null-safe (`try_cast`), so running them on records that will be
    quarantined changes nothing for the valid ones (tests/unit/spark_jobs/test_stream_transform.py compares with
    batch)."""
    return cleaning.parse_and_flag(records, table).transform(cleaning.clean, table)


def clean_rows(prepared: DataFrame, table: str) -> DataFrame:
    """Valid records, cleaned exactly as the batch job cleans them, with the lineage columns last."""
    return prepared.where(F.col(cleaning.REASON_COLUMN).isNull()).select(
        *cleaning.CLEAN_COLUMNS[table], *LINEAGE_COLUMNS
    )


def quarantine_rows(prepared: DataFrame, table: str) -> DataFrame:
    return prepared.where(F.col(cleaning.REASON_COLUMN).isNotNull()).select(
        F.lit(table).alias("source_table"),
        cleaning.VALUE_COLUMN,
        F.col(cleaning.REASON_COLUMN).alias("reason"),
        *QUARANTINE_COLUMNS[3:],
    )


def output_schemas(spark: SparkSession, table: str) -> tuple[StructType, StructType]:
    """(clean table schema, quarantine schema), derived from the transformations themselves."""
    prepared = prepare(kinesis_records(spark.createDataFrame([], KINESIS_SCHEMA)), table)
    return clean_rows(prepared, table).schema, quarantine_rows(prepared, table).schema
