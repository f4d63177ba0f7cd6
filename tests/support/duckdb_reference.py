"""An independent implementation of docs/contract.md §4-5 in DuckDB SQL: the oracle for the Spark job.

Why it exists: the cross-check test compares every Spark query with this SQL over the same JSON files, and the
batch benchmark times both engines on them. It shares no code with cleaning.py / queries.py on purpose (only
the contract), so a mistake in one shows up as a difference.

    tables(connection, {"pin": glob, "geo": glob, "user": glob})  # creates pin, geo, user views + counts
    QUERIES[name]                                                 # SQL text of each docs/contract.md §5 query
"""

from __future__ import annotations

import duckdb

PIN_FIELDS = (
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
)
FIELDS = {
    "pin": PIN_FIELDS,
    "geo": ("ind", "timestamp", "latitude", "longitude", "country"),
    "user": ("ind", "first_name", "last_name", "age", "date_joined"),
}
REQUIRED = {
    "pin": ("index", "unique_id", "category"),
    "geo": FIELDS["geo"],
    "user": FIELDS["user"],
}
INTEGERS = {"pin": ("index", "downloaded"), "geo": ("ind",), "user": ("ind", "age")}
FOLLOWERS = "^([0-9]+)([kM]?)$"
TS = "%Y-%m-%d %H:%M:%S"


def _list(names: tuple[str, ...]) -> str:
    return "[" + ", ".join(f"'{n}'" for n in names) + "]"


def _invalid(table: str, name: str) -> str:
    column = f'"{name}"'
    if name in INTEGERS[table]:
        return f"(NOT regexp_full_match({column}, '-?[0-9]+') OR TRY_CAST({column} AS INTEGER) IS NULL)"
    if name in ("latitude", "longitude"):
        return f"TRY_CAST({column} AS DOUBLE) IS NULL"
    if name in ("timestamp", "date_joined"):
        return f"try_strptime({column}, '{TS}') IS NULL"
    if table == "pin" and name == "follower_count":
        return f"({column} NOT IN ('', 'User Info Error') AND NOT regexp_matches({column}, '{FOLLOWERS}'))"
    return "false"


def _flagged_sql(table: str, glob: str) -> str:
    fields = FIELDS[table]
    extracted = ", ".join(f'doc ->> \'$."{n}"\' AS "{n}"' for n in fields)
    missing = " || ".join(f"CASE WHEN \"{n}\" IS NULL THEN '{n}, ' ELSE '' END" for n in REQUIRED[table])
    invalid = " || ".join(
        f"CASE WHEN \"{n}\" IS NOT NULL AND {_invalid(table, n)} THEN '{n}, ' ELSE '' END" for n in fields
    )
    return f"""
    WITH lines AS (
      SELECT value FROM read_csv('{glob}', columns = {{'value': 'VARCHAR'}}, header = false, delim = '\\x01',
                                 quote = '', escape = '', auto_detect = false, new_line = '\\n')
    ), documents AS (
      SELECT value, CASE WHEN json_valid(value) THEN value END AS doc FROM lines
    ), parsed AS (
      SELECT value, CASE WHEN json_type(doc) = 'OBJECT' THEN json_keys(doc) END AS keys, {extracted}
      FROM documents
    ), checked AS (
      SELECT *,
             array_to_string(list_sort(list_filter(keys, lambda k: NOT list_contains({_list(fields)}, k))), ', ') AS extra,
             rtrim({missing}, ', ') AS missing,
             rtrim({invalid}, ', ') AS invalid
      FROM parsed
    )
    SELECT * EXCLUDE (keys, extra, missing, invalid),
           CASE WHEN keys IS NULL THEN 'corrupt JSON: not a JSON object'
                WHEN extra <> '' THEN 'unexpected fields: ' || extra
                WHEN missing <> '' THEN 'missing required fields: ' || missing
                WHEN invalid <> '' THEN 'invalid values: ' || invalid
           END AS reason
    FROM checked
    """


def _nullif(column: str, *placeholders: str) -> str:
    values = ", ".join("'" + p.replace("'", "''") + "'" for p in ("", *placeholders))
    return f'CASE WHEN "{column}" IN ({values}) THEN NULL ELSE "{column}" END'


CLEAN = {
    "pin": f"""
      SELECT CAST("index" AS INTEGER) AS ind, {_nullif("unique_id")} AS unique_id,
             {_nullif("title", "No Title Data Available")} AS title,
             {_nullif("description", "No description available Story format", "No description available", "Untitled")}
               AS description,
             TRY_CAST(TRY_CAST(regexp_extract(follower_count, '{FOLLOWERS}', 1) AS BIGINT)
                      * CASE regexp_extract(follower_count, '{FOLLOWERS}', 2) WHEN 'k' THEN 1000
                                                                             WHEN 'M' THEN 1000000 ELSE 1 END
                      AS INTEGER) AS follower_count,
             {_nullif("poster_name", "User Info Error")} AS poster_name,
             {_nullif("tag_list", "N,o, ,T,a,g,s, ,A,v,a,i,l,a,b,l,e")} AS tag_list,
             {_nullif("is_image_or_video")} AS is_image_or_video,
             {_nullif("image_src", "Image src error.")} AS image_src,
             regexp_replace({_nullif("save_location")}, '^\\s*Local save in\\s*', '') AS save_location,
             {_nullif("category")} AS category
      FROM flagged_pin WHERE reason IS NULL""",
    "geo": f"""
      SELECT CAST(ind AS INTEGER) AS ind, {_nullif("country")} AS country,
             [CAST(latitude AS DOUBLE), CAST(longitude AS DOUBLE)] AS coordinates,
             strptime("timestamp", '{TS}') AS "timestamp"
      FROM flagged_geo WHERE reason IS NULL""",
    "user": f"""
      SELECT CAST(ind AS INTEGER) AS ind, first_name || ' ' || last_name AS user_name, CAST(age AS INTEGER) AS age,
             strptime(date_joined, '{TS}') AS date_joined
      FROM flagged_user WHERE reason IS NULL""",
}


def tables(connection: duckdb.DuckDBPyConnection, globs: dict[str, str]) -> dict[str, dict[str, int]]:
    """Create tables pin, geo, user (cleaned, one row per ind); return counts per table like the Spark job."""
    connection.execute("SET enable_progress_bar = false").fetchall()
    counts = {}
    for table, glob in globs.items():
        connection.execute(f"CREATE OR REPLACE TABLE flagged_{table} AS {_flagged_sql(table, glob)}").fetchall()
        connection.execute(f"CREATE OR REPLACE TABLE cleaned_{table} AS {CLEAN[table]}").fetchall()
        connection.execute(
            f"CREATE OR REPLACE TABLE {table} AS SELECT DISTINCT ON (ind) * FROM cleaned_{table} "
            f"ORDER BY ALL NULLS FIRST"
        ).fetchall()
        read, quarantined = connection.execute(f"SELECT count(*), count(reason) FROM flagged_{table}").fetchall()[0]
        valid = read - quarantined
        rows = connection.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0]
        counts[table] = {"read": read, "quarantined": quarantined, "duplicates_dropped": valid - rows, "rows": rows}
    return counts


AGE_GROUP = """CASE WHEN age > 50 THEN '+50' WHEN age BETWEEN 36 AND 50 THEN '36-50'
                    WHEN age BETWEEN 25 AND 35 THEN '25-35' WHEN age BETWEEN 18 AND 24 THEN '18-24' END"""
MEDIAN = "CAST(floor(quantile_cont(follower_count, 0.5)) AS BIGINT)"


def _most_popular(source: str, group: str, where: str = "true") -> str:
    return f"""
      WITH c AS (SELECT {group}, category, count(*) AS category_count FROM ({source})
                 WHERE {group} IS NOT NULL AND category IS NOT NULL AND {where} GROUP BY ALL)
      SELECT DISTINCT {group}, category, category_count FROM c
      QUALIFY category_count = max(category_count) OVER (PARTITION BY {group}) ORDER BY ALL"""


PIN_GEO = "SELECT * FROM pin JOIN geo USING (ind)"
PIN_USER = f"SELECT *, {AGE_GROUP} AS age_group, CAST(year(date_joined) AS INTEGER) AS join_year FROM pin JOIN user USING (ind)"
TOP_USER = f"""
  SELECT DISTINCT country, poster_name, follower_count FROM ({PIN_GEO})
  WHERE country IS NOT NULL AND poster_name IS NOT NULL AND follower_count IS NOT NULL
  QUALIFY follower_count = max(follower_count) OVER (PARTITION BY country) ORDER BY ALL"""

QUERIES = {
    "popular_category_by_country": _most_popular(PIN_GEO, "country"),
    "popular_category_by_year": _most_popular(
        f"SELECT *, CAST(year(timestamp) AS INTEGER) AS post_year FROM ({PIN_GEO})",
        "post_year",
        "post_year BETWEEN 2018 AND 2022",
    ),
    "top_user_by_country": TOP_USER,
    "country_with_top_user": f"""
      SELECT DISTINCT country, follower_count FROM ({TOP_USER})
      ORDER BY follower_count DESC, country ASC LIMIT 1""",
    "popular_category_by_age_group": _most_popular(PIN_USER, "age_group"),
    "median_followers_by_age_group": f"""
      SELECT age_group, {MEDIAN} AS median_follower_count FROM ({PIN_USER})
      WHERE age_group IS NOT NULL AND follower_count IS NOT NULL GROUP BY ALL ORDER BY ALL""",
    "users_joined_by_year": """
      SELECT CAST(year(date_joined) AS INTEGER) AS join_year, count(*) AS number_users_joined
      FROM (SELECT DISTINCT user_name, age, date_joined FROM user
            WHERE user_name IS NOT NULL AND age IS NOT NULL AND date_joined IS NOT NULL)
      WHERE year(date_joined) BETWEEN 2015 AND 2020 GROUP BY ALL ORDER BY ALL""",
    "median_followers_by_join_year": f"""
      SELECT join_year, {MEDIAN} AS median_follower_count FROM ({PIN_USER})
      WHERE join_year BETWEEN 2015 AND 2020 AND follower_count IS NOT NULL GROUP BY ALL ORDER BY ALL""",
    "median_followers_by_join_year_and_age_group": f"""
      SELECT age_group, join_year, {MEDIAN} AS median_follower_count FROM ({PIN_USER})
      WHERE join_year BETWEEN 2015 AND 2020 AND age_group IS NOT NULL AND follower_count IS NOT NULL
      GROUP BY ALL ORDER BY ALL""",
}
