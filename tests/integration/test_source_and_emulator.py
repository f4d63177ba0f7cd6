"""The seeded MySQL source (real MariaDB) and the emulator reading it, posting to a small local HTTP server."""

import json
import time

import pymysql
import pytest

from emulator.sampling import draws
from services.mysql import seed

ROWS = 400


@pytest.fixture(scope="module")
def seeded(stack, settings, run_module):
    stack("mysql")
    result = run_module("services.mysql.seed", "--rows", str(ROWS), "--seed", "5")
    assert result.returncode == 0, result.stderr
    assert f"pinterest_data={ROWS:,}" in result.stdout
    return settings


def query(settings, sql):
    connection = seed.connect(settings, settings.mysql_database)
    with connection, connection.cursor(pymysql.cursors.DictCursor) as cursor:
        cursor.execute(sql)
        return cursor.fetchall()


def test_seeded_tables_match_the_generator(seeded):
    expected = list(seed.generate(ROWS, 5))
    pins = query(seeded, "SELECT * FROM pinterest_data ORDER BY `index`")
    geos = query(seeded, "SELECT * FROM geolocation_data ORDER BY ind")
    users = query(seeded, "SELECT * FROM user_data ORDER BY ind")
    assert len(pins) == len(geos) == len(users) == ROWS
    for (pin, geo, user), db_pin, db_geo, db_user in zip(expected, pins, geos, users, strict=True):
        assert tuple(db_pin.values()) == pin
        assert (
            db_geo["ind"],
            str(db_geo["timestamp"]),
            db_geo["latitude"],
            db_geo["longitude"],
            db_geo["country"],
        ) == geo
        assert (
            db_user["ind"],
            db_user["first_name"],
            db_user["last_name"],
            db_user["age"],
            str(db_user["date_joined"]),
        ) == user


def test_schema_is_exactly_the_spec(seeded):
    columns = query(
        seeded,
        "SELECT TABLE_NAME, COLUMN_NAME, DATA_TYPE FROM information_schema.COLUMNS "
        f"WHERE TABLE_SCHEMA = '{seeded.mysql_database}' ORDER BY TABLE_NAME, ORDINAL_POSITION",
    )
    by_table = {}
    for c in columns:
        by_table.setdefault(c["TABLE_NAME"], []).append((c["COLUMN_NAME"], c["DATA_TYPE"]))
    assert by_table["geolocation_data"] == [
        ("ind", "int"), ("timestamp", "datetime"), ("latitude", "double"), ("longitude", "double"),
        ("country", "varchar"),
    ]  # fmt: skip
    assert by_table["user_data"] == [
        ("ind", "int"), ("first_name", "varchar"), ("last_name", "varchar"), ("age", "int"),
        ("date_joined", "datetime"),
    ]  # fmt: skip
    assert [name for name, _ in by_table["pinterest_data"]] == list(seed.PIN_COLUMNS)
    assert dict(by_table["pinterest_data"])["index"] == "int"
    assert dict(by_table["pinterest_data"])["downloaded"] == "int"


def test_reseeding_replaces_the_data(seeded, run_module):
    result = run_module("services.mysql.seed", "--rows", "50", "--seed", "6")
    assert result.returncode == 0, result.stderr
    assert query(seeded, "SELECT COUNT(*) AS n FROM user_data")[0]["n"] == 50
    result = run_module("services.mysql.seed", "--rows", str(ROWS), "--seed", "5")
    assert result.returncode == 0, result.stderr


def acking_proxy(request):
    records = json.loads(request["body"])["records"]
    offsets = [{"partition": 0, "offset": i, "error_code": None, "error": None} for i in range(len(records))]
    return 200, {"offsets": offsets, "key_schema_id": None, "value_schema_id": None}


def posted_values(server, topic):
    return [
        record["value"]
        for request in server.requests
        if request["path"] == f"/topics/{topic}"
        for record in json.loads(request["body"])["records"]
    ]


def test_emulator_posts_the_sampled_rows(seeded, scripted_server, run_module):
    scripted_server.default = acking_proxy
    result = run_module(
        "emulator", "--mode", "batch", "--count", "30", "--burst", "--batch-size", "7", "--target", "proxy",
        "--seed", "100", env={"REST_PROXY_URL": scripted_server.url},
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "acked 90, failed 0" in result.stdout
    expected = [d.index for d in draws(100, ROWS, 30)]
    pins = posted_values(scripted_server, seeded.topic("pin"))
    geos = posted_values(scripted_server, seeded.topic("geo"))
    assert sorted(p["index"] for p in pins) == sorted(expected)
    assert sorted(g["ind"] for g in geos) == sorted(expected)
    db_geo = {r["ind"]: r for r in query(seeded, "SELECT * FROM geolocation_data")}
    for geo in geos:
        row = db_geo[geo["ind"]]
        assert list(geo) == ["ind", "timestamp", "latitude", "longitude", "country"]
        assert geo == {**row, "timestamp": row["timestamp"].strftime("%Y-%m-%d %H:%M:%S")}
    assert all(len(json.loads(r["body"])["records"]) <= 7 for r in scripted_server.requests)


def test_emulator_reports_failed_records_and_exits_non_zero(seeded, scripted_server, run_module):
    scripted_server.default = lambda request: (200, {"offsets": [
        {"partition": None, "offset": None, "error_code": 1, "error": "record too large"}
        for _ in json.loads(request["body"])["records"]
    ]})  # fmt: skip
    result = run_module(
        "emulator", "--count", "3", "--burst", "--target", "proxy", env={"REST_PROXY_URL": scripted_server.url}
    )
    assert result.returncode == 1
    assert "failed 9" in result.stdout
    assert "9 records failed; all of them are in" in result.stderr


def test_unreachable_mysql_is_named_within_5_seconds(run_module):
    started = time.monotonic()
    result = run_module(
        "emulator", "--count", "1", "--target", "proxy", env={"MYSQL_HOST": "127.0.0.1", "MYSQL_PORT": "1"}
    )
    assert time.monotonic() - started < 10  # includes interpreter start-up
    assert result.returncode != 0
    assert "Cannot reach MySQL at 127.0.0.1:1" in result.stdout + result.stderr


def test_missing_tables_say_make_seed(stack, run_module):
    stack("mysql")
    result = run_module(
        "emulator", "--count", "1", "--target", "proxy", env={"MYSQL_DATABASE": "pinterest_data_never_seeded"}
    )
    assert result.returncode != 0
    assert "make seed" in result.stdout + result.stderr


def test_a_database_outside_the_grant_is_named_with_what_to_do(stack, run_module):
    """The stack's MySQL user holds rights on its own databases only (least privilege): a database outside them is
    refused with the reason, not reported as MySQL being unreachable."""
    stack("mysql")
    result = run_module("emulator", "--count", "1", "--target", "proxy", env={"MYSQL_DATABASE": "someone_elses_db"})
    assert result.returncode != 0
    assert "may not use database 'someone_elses_db'" in result.stdout + result.stderr
    assert "Is the stack up" not in result.stdout + result.stderr


def test_invalid_settings_fail_before_any_work(run_module):
    result = run_module("emulator", "--count", "1", env={"PIPELINE_USER_ID": "not-an-id"})
    assert result.returncode != 0
    assert "PIPELINE_USER_ID" in result.stderr
