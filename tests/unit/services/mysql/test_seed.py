import collections
import itertools
import re

import pytest

from services.mysql import seed

ROWS = 6000


@pytest.fixture(scope="module")
def rows():
    return list(seed.generate(ROWS, 7))


def column(rows, table, name):
    position = {"pin": 0, "geo": 1, "user": 2}[table]
    index = seed.COLUMNS[table].index(name)
    return [record[position][index] for record in rows]


def test_generation_is_deterministic(rows):
    assert list(seed.generate(ROWS, 7)) == rows
    assert list(seed.generate(ROWS, 8)) != rows


def test_chunks_do_not_depend_on_the_row_count_beyond_them():
    # The first chunk's randomness is fixed by the seed, but pools (posters, people) scale with the row count.
    assert len(list(seed.generate(seed.CHUNK + 10, 3))) == seed.CHUNK + 10


def test_rows_share_the_join_key(rows):
    assert column(rows, "pin", "index") == list(range(ROWS))
    assert column(rows, "geo", "ind") == list(range(ROWS))
    assert column(rows, "user", "ind") == list(range(ROWS))


def test_every_dirty_form_is_present_at_a_realistic_rate(rows):
    titles = collections.Counter(column(rows, "pin", "title"))
    descriptions = collections.Counter(column(rows, "pin", "description"))
    followers = column(rows, "pin", "follower_count")
    broken = sum(1 for r in rows if r[0][4] == seed.USER_INFO_ERROR)
    assert 0.01 < broken / ROWS < 0.06
    assert titles[seed.NO_TITLE] >= broken
    for placeholder in (seed.NO_DESCRIPTION_STORY, seed.NO_DESCRIPTION, seed.UNTITLED):
        assert descriptions[placeholder] > 0, placeholder
    assert any(d.endswith("…\u00a0") for d in descriptions)
    assert collections.Counter(column(rows, "pin", "tag_list"))[seed.NO_TAGS] == broken
    assert collections.Counter(column(rows, "pin", "image_src"))[seed.IMAGE_SRC_ERROR] == broken
    assert collections.Counter(column(rows, "pin", "downloaded"))[0] == broken
    assert any(name.endswith(" ") for name in column(rows, "pin", "poster_name"))
    suffixed = [f for f in followers if f.endswith(("k", "M"))]
    assert len(suffixed) / ROWS > 0.5, "follower counts mostly carry k/M suffixes"
    assert any(f.endswith("M") for f in followers) and "0" in followers
    assert all(re.fullmatch(r"\d+[kM]?|User Info Error", f) for f in followers)
    assert set(column(rows, "pin", "is_image_or_video")) == {"image", "video", seed.STORY_FORMAT}


def test_follower_counts_reach_millions_but_not_beyond_about_ten():
    values = [seed._follower_count(__import__("random").Random(i)) for i in range(20000)]
    assert max(values) <= 10_500_000 and max(values) > 1_000_000
    assert seed.format_follower_count(26_400) == "26k"
    assert seed.format_follower_count(6_100_000) == "6M"
    assert seed.format_follower_count(437) == "437"


def test_pin_values_have_the_original_shapes(rows):
    for pin, _geo, _user in rows[:500]:
        assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", pin[1])
        assert pin[10] == f"Local save in /data/{pin[11]}"
        assert pin[8] == seed.IMAGE_SRC_ERROR or re.fullmatch(
            r"https://i\.pinimg\.com/originals/(..)/(..)/(..)/\1\2\3[0-9a-f]{26}\.(jpg|png)", pin[8]
        )


def test_categories_come_in_blocks(rows):
    categories = column(rows, "pin", "category")
    changes = sum(1 for a, b in itertools.pairwise(categories) if a != b)
    assert set(categories) == set(seed.CATEGORIES)
    assert changes == len(seed.CATEGORIES) - 1
    assert categories[0] == "art"


def test_geo_values(rows):
    years = collections.Counter(int(t[:4]) for t in column(rows, "geo", "timestamp"))
    assert min(years) == 2015 and max(years) == 2022
    assert sum(years[y] for y in range(2018, 2023)) / ROWS > 0.8
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", t) for t in column(rows, "geo", "timestamp"))
    assert all(-90 <= v <= 90 for v in column(rows, "geo", "latitude"))
    assert all(-180 <= v <= 180 for v in column(rows, "geo", "longitude"))
    assert all(len(str(abs(v)).replace(".", "").lstrip("0")) <= 6 for v in column(rows, "geo", "latitude"))
    countries = set(column(rows, "geo", "country"))
    assert "Antarctica (the territory South of 60 deg S)" in countries or len(countries) > 200


def test_users_post_many_times(rows):
    people = collections.Counter(r[2][1:] for r in rows)
    assert max(people.values()) >= 3
    assert len(people) < ROWS / 2
    ages = column(rows, "user", "age")
    assert min(ages) >= 18 and max(ages) <= 65
    assert {int(d[:4]) for d in column(rows, "user", "date_joined")} == {2015, 2016, 2017}


def test_posters_post_many_times(rows):
    posters = collections.Counter(column(rows, "pin", "poster_name"))
    del posters[seed.USER_INFO_ERROR]
    assert max(posters.values()) >= 3


def test_schema_matches_the_spec_column_order():
    statements = seed.schema_statements()
    creates = [s for s in statements if s.startswith("CREATE TABLE")]
    assert len(creates) == 3
    for create, table in zip(creates, ("pin", "geo", "user"), strict=True):
        names = re.findall(r"^\s+`?(\w+)`? [A-Z]", create, flags=re.M)
        assert tuple(names) == seed.COLUMNS[table]
