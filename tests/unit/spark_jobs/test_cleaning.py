"""Each docs/contract.md §4 cleaning rule on a tiny hand-made DataFrame, expected output written by hand; then the whole
chain on records recorded from the original pipeline (tests/data/samples)."""

from __future__ import annotations

import json
from datetime import datetime

from pyspark.sql import functions as F

from spark_jobs import cleaning
from tests.support import SAMPLES_DIR

STR = "string"


def values(spark, *lines: str):
    return spark.createDataFrame([(line,) for line in lines], "value string")


# --- parsing and quarantine -------------------------------------------------------------------------------------
def test_parse_records_reads_numbers_as_numbers_or_strings(spark, assert_frames_equal):
    df = values(
        spark, '{"ind": 7, "first_name": "A", "last_name": "B", "age": "20", "date_joined": "2015-01-02 03:04:05"}'
    )
    actual = cleaning.parse_records(df, "user").drop("value")
    expected = spark.createDataFrame(
        [(["ind", "first_name", "last_name", "age", "date_joined"], "7", "A", "B", "20", "2015-01-02 03:04:05")],
        "_json_keys array<string>, ind string, first_name string, last_name string, age string, date_joined string",
    )
    assert_frames_equal(actual, expected)


PIN_IN_USER_TOPIC = (SAMPLES_DIR / "original_user.jsonl").read_text().splitlines()[13]
GEO_IN_USER_TOPIC = (SAMPLES_DIR / "original_user.jsonl").read_text().splitlines()[14]
GOOD_USER = '{"ind": 1, "first_name": "A", "last_name": "B", "age": 20, "date_joined": "2015-01-02 03:04:05"}'


USER_CASES = [
    (GOOD_USER, None),
    ('{"ind": 1, "first_name": "A", "last_na', "corrupt JSON: not a JSON object"),
    ("[1, 2]", "corrupt JSON: not a JSON object"),
    (
        PIN_IN_USER_TOPIC,
        "unexpected fields: category, description, downloaded, follower_count, image_src, index, "
        "is_image_or_video, poster_name, save_location, tag_list, title, unique_id",
    ),
    (GEO_IN_USER_TOPIC, "unexpected fields: country, latitude, longitude, timestamp"),
    (
        '{"ind": 1, "first_name": "A", "age": 20, "date_joined": null}',
        "missing required fields: last_name, date_joined",
    ),
    (GOOD_USER.replace("20,", '"twenty",'), "invalid values: age"),
    (GOOD_USER.replace("20,", "20.5,"), "invalid values: age"),
    (GOOD_USER.replace("2015-01-02 03:04:05", "yesterday"), "invalid values: date_joined"),
]


def test_flag_invalid_records_user(spark):
    flagged = values(spark, *(line for line, _ in USER_CASES)).transform(cleaning.parse_and_flag, "user")
    assert [row[0] for row in flagged.select(cleaning.REASON_COLUMN).collect()] == [reason for _, reason in USER_CASES]


def test_flag_invalid_records_pin_follower_count(spark):
    cases = [
        ("26k", None),
        ("User Info Error", None),
        ("", None),
        ("lots", "invalid values: follower_count"),
        ("2.5k", "invalid values: follower_count"),
    ]
    lines = [json.dumps({"index": 1, "unique_id": "u", "category": "art", "follower_count": fc}) for fc, _ in cases]
    flagged = values(spark, *lines).transform(cleaning.parse_and_flag, "pin")
    assert [row[0] for row in flagged.select(cleaning.REASON_COLUMN).collect()] == [reason for _, reason in cases]


def test_flag_invalid_records_geo_coordinates(spark):
    line = '{"ind": 1, "timestamp": "2020-01-01 00:00:00", "latitude": "north", "longitude": 3, "country": "Peru"}'
    flagged = values(spark, line).transform(cleaning.parse_and_flag, "geo")
    assert flagged.select(cleaning.REASON_COLUMN).collect()[0][0] == "invalid values: latitude"


def test_valid_and_quarantined_records_split_and_keep_carried_columns(spark, assert_frames_equal):
    df = spark.createDataFrame([(GOOD_USER, "f1"), ("{oops", "f2")], "value string, source_file string")
    flagged = df.transform(cleaning.parse_and_flag, "user")
    assert_frames_equal(
        cleaning.valid_records(flagged),
        spark.createDataFrame(
            [("f1", "1", "A", "B", "20", "2015-01-02 03:04:05")],
            "source_file string, ind string, first_name string, last_name string, age string, date_joined string",
        ),
    )
    assert_frames_equal(
        cleaning.quarantined_records(flagged, "user"),
        spark.createDataFrame(
            [("{oops", "corrupt JSON: not a JSON object", "f2")], "value string, reason string, source_file string"
        ),
    )


# --- value rules ------------------------------------------------------------------------------------------------
def test_null_empty_strings(spark, assert_frames_equal):
    df = spark.createDataFrame([("", "x"), ("a", "")], "a string, b string")
    expected = spark.createDataFrame([(None, "x"), ("a", "")], "a string, b string")
    assert_frames_equal(cleaning.null_empty_strings(df, ("a",)), expected)


def test_null_placeholders(spark, assert_frames_equal):
    schema = (
        "title string, description string, poster_name string, follower_count string, tag_list string, image_src string"
    )
    df = spark.createDataFrame(
        [
            ("No Title Data Available", "No description available Story format", "User Info Error",
             "User Info Error", "N,o, ,T,a,g,s, ,A,v,a,i,l,a,b,l,e", "Image src error."),
            ("T", "No description available", "Ray ", "26k", "a,b", "https://i.pinimg.com/x.jpg"),
            ("Untitled", "Untitled", "User", "6M", "N,o", "Image src error"),
        ],
        schema,
    )  # fmt: skip
    expected = spark.createDataFrame(
        [
            (None, None, None, None, None, None),
            ("T", None, "Ray ", "26k", "a,b", "https://i.pinimg.com/x.jpg"),
            ("Untitled", None, "User", "6M", "N,o", "Image src error"),
        ],
        schema,
    )
    assert_frames_equal(cleaning.null_placeholders(df), expected)


def test_parse_follower_count(spark, assert_frames_equal):
    df = spark.createDataFrame(
        [(1, "437"), (2, "26k"), (3, "6M"), (4, "0"), (5, None), (6, "User Info Error"), (7, "10M"), (8, "5000M")],
        "id int, follower_count string",
    )
    expected = spark.createDataFrame(
        [(1, 437), (2, 26000), (3, 6000000), (4, 0), (5, None), (6, None), (7, 10000000), (8, None)],
        "id int, follower_count int",
    )
    assert_frames_equal(cleaning.parse_follower_count(df), expected)


def test_cast_integers(spark, assert_frames_equal):
    df = spark.createDataFrame([("7", "1"), ("10794", None)], "index string, downloaded string")
    expected = spark.createDataFrame([(7, 1), (10794, None)], "index int, downloaded int")
    assert_frames_equal(cleaning.cast_integers(df, ("index", "downloaded")), expected)


def test_cast_timestamps(spark, assert_frames_equal):
    df = spark.createDataFrame([("2020-08-28 03:52:47",), (None,)], "timestamp string")
    expected = spark.createDataFrame([(datetime(2020, 8, 28, 3, 52, 47),), (None,)], "timestamp timestamp")
    assert_frames_equal(cleaning.cast_timestamps(df, ("timestamp",)), expected)


def test_strip_save_location_prefix(spark, assert_frames_equal):
    df = spark.createDataFrame([("Local save in /data/art",), ("/data/travel",), (None,)], "save_location string")
    expected = spark.createDataFrame([("/data/art",), ("/data/travel",), (None,)], "save_location string")
    assert_frames_equal(cleaning.strip_save_location_prefix(df), expected)


def test_rename_index(spark, assert_frames_equal):
    df = spark.createDataFrame([(1, "u")], "index int, unique_id string")
    assert_frames_equal(cleaning.rename_index(df), spark.createDataFrame([(1, "u")], "ind int, unique_id string"))


def test_combine_coordinates(spark, assert_frames_equal):
    df = spark.createDataFrame(
        [("1", "-89.9787", "-173.293", "Albania")], "ind string, latitude string, longitude string, country string"
    )
    expected = spark.createDataFrame(
        [("1", "Albania", [-89.9787, -173.293])], "ind string, country string, coordinates array<double>"
    )
    assert_frames_equal(cleaning.combine_coordinates(df), expected)


def test_combine_user_name(spark, assert_frames_equal):
    df = spark.createDataFrame([(1, "Abigail", "Ali", 20)], "ind int, first_name string, last_name string, age int")
    expected = spark.createDataFrame([(1, 20, "Abigail Ali")], "ind int, age int, user_name string")
    assert_frames_equal(cleaning.combine_user_name(df), expected)


def test_order_columns_drops_unused_source_fields_and_keeps_carried_ones(spark, assert_frames_equal):
    df = spark.createDataFrame(
        [("x", 1, "2020", "P", 5, "shard-1")],
        "_tag string, ind int, timestamp string, country string, latitude int, shard string",
    ).withColumn("coordinates", F.array(F.lit(1.0)))
    expected = spark.createDataFrame(
        [(1, "P", [1.0], "2020", "x", "shard-1")],
        "ind int, country string, coordinates array<double>, timestamp string, _tag string, shard string",
    )
    assert_frames_equal(cleaning.order_columns(df, "geo"), expected)


# --- whole tables -----------------------------------------------------------------------------------------------
PIN_CLEAN_SCHEMA = (
    "ind int, unique_id string, title string, description string, follower_count int, poster_name string, "
    "tag_list string, is_image_or_video string, image_src string, save_location string, category string"
)


def test_clean_pin_good_and_broken_rows(spark, assert_frames_equal):
    good = (SAMPLES_DIR / "original_pin.jsonl").read_text().splitlines()[0]
    broken = json.dumps({
        "index": "3089", "unique_id": "88f9227e", "title": "No Title Data Available",
        "description": "No description available Story format", "poster_name": "User Info Error",
        "follower_count": "User Info Error", "tag_list": "N,o, ,T,a,g,s, ,A,v,a,i,l,a,b,l,e",
        "is_image_or_video": "multi-video(story page format)", "image_src": "Image src error.", "downloaded": 0,
        "save_location": "Local save in /data/christmas", "category": "christmas",
    })  # fmt: skip
    parsed = values(spark, good, broken).transform(cleaning.parse_and_flag, "pin").transform(cleaning.valid_records)
    expected = spark.createDataFrame(
        [
            (10794, "c4bd2577-a7bb-4409-bb7a-17d5ed7e1cf1", "TireBuyer", "Nissan GT-R. Sick.", 437, "Ray Uyemura",
             "Lowrider,Old Vintage Cars,Antique Cars,Austin Martin,Nissan Gtr Black,Jaguar,1959 Cadillac,Cadillac Ct6,"
             "Old School Cars", "image",
             "https://i.pinimg.com/originals/0d/29/9f/0d299f3df020395aa7ce8387f40fbeed.jpg", "/data/vehicles",
             "vehicles"),
            (3089, "88f9227e", None, None, None, None, None, "multi-video(story page format)", None,
             "/data/christmas", "christmas"),
        ],
        PIN_CLEAN_SCHEMA,
    )  # fmt: skip
    assert_frames_equal(cleaning.clean(parsed, "pin"), expected)


def test_clean_geo_and_user(spark, assert_frames_equal):
    geo = values(
        spark,
        '{"ind": 1212, "timestamp": "2021-02-04 18:34:05", "latitude": -75.7236, "longitude": -156.761, "country": "Cuba"}',
    )
    user = values(
        spark,
        '{"ind": "7528", "first_name": "Abigail", "last_name": "Ali", "age": "20", "date_joined": "2015-10-24 11:23:51"}',
    )
    clean_geo = (
        geo.transform(cleaning.parse_and_flag, "geo").transform(cleaning.valid_records).transform(cleaning.clean, "geo")
    )
    clean_user = (
        user.transform(cleaning.parse_and_flag, "user")
        .transform(cleaning.valid_records)
        .transform(cleaning.clean, "user")
    )
    assert_frames_equal(
        clean_geo,
        spark.createDataFrame(
            [(1212, "Cuba", [-75.7236, -156.761], datetime(2021, 2, 4, 18, 34, 5))],
            "ind int, country string, coordinates array<double>, timestamp timestamp",
        ),
    )
    assert_frames_equal(
        clean_user,
        spark.createDataFrame(
            [(7528, "Abigail Ali", 20, datetime(2015, 10, 24, 11, 23, 51))],
            "ind int, user_name string, age int, date_joined timestamp",
        ),
    )


def test_drop_duplicate_records_keeps_one_row_per_ind(spark, assert_frames_equal):
    df = spark.createDataFrame(
        [(1, "a", 5), (1, "a", 5), (1, "a", 5), (2, "b", None), (2, "b", 3), (None, "x", 1)],
        "ind int, name string, n int",
    )
    # Exact re-sends collapse; conflicting records keep the smallest (nulls first); a null key cannot be joined.
    expected = spark.createDataFrame([(1, "a", 5), (2, "b", None)], "ind int, name string, n int")
    assert_frames_equal(cleaning.drop_duplicate_records(df), expected)


def test_original_samples_end_to_end(spark):
    """The recorded original records: only the pin and geo records that landed in the user topic are quarantined;
    re-sent records collapse to one row per ind (counts worked out from the files by hand)."""
    expected = {"pin": (41, 0, 41, 0), "geo": (72, 0, 57, 15), "user": (82, 2, 65, 15)}
    for table, (read, quarantined, rows, duplicates) in expected.items():
        lines = (SAMPLES_DIR / f"original_{table}.jsonl").read_text().splitlines()
        flagged = values(spark, *lines).transform(cleaning.parse_and_flag, table).cache()
        reasons = [r.reason for r in cleaning.quarantined_records(flagged, table).collect()]
        cleaned = cleaning.valid_records(flagged).transform(cleaning.clean, table)
        deduplicated = cleaning.drop_duplicate_records(cleaned)
        assert (len(lines), len(reasons), deduplicated.count(), cleaned.count() - deduplicated.count()) == (
            read,
            quarantined,
            rows,
            duplicates,
        ), table
        assert deduplicated.columns == list(cleaning.CLEAN_COLUMNS[table])
        assert all(reason.startswith("unexpected fields: ") for reason in reasons)
        flagged.unpersist()
