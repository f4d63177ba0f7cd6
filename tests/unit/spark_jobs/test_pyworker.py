"""The Python worker daemon drops pyspark's archives from sys.path only when pyspark and py4j import without them."""

from __future__ import annotations

import sys

from spark_jobs import pyworker


def test_archives_are_dropped_when_site_packages_has_pyspark(monkeypatch, tmp_path):
    site = pyworker.without_archives(sys.path)
    archives = [str(tmp_path / "pyspark.zip"), str(tmp_path / "spark-core_2.13-4.1.1.jar")]
    monkeypatch.setattr(sys, "path", [*archives, *site])
    monkeypatch.setitem(sys.path_importer_cache, archives[0], None)
    assert pyworker.drop_archives()
    assert sys.path == site
    assert archives[0] not in sys.path_importer_cache


def test_nothing_changes_when_pyspark_lives_only_in_the_archives(monkeypatch, tmp_path):
    only_archives = [str(tmp_path / "pyspark.zip"), str(tmp_path)]
    monkeypatch.setattr(sys, "path", list(only_archives))
    assert not pyworker.drop_archives()
    assert sys.path == only_archives
