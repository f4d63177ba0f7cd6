"""pipeline/private.py: secrets in 0600 files under 0700 folders, written atomically (old or new content, never an
empty or partial file), created once even when two processes race."""

from __future__ import annotations

import os
import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from pipeline.private import create_private_once, private_dir, write_private


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def permissive_umask():
    previous = os.umask(0o000)
    yield
    os.umask(previous)


def test_a_new_file_is_0600_whatever_the_umask(tmp_path: Path, permissive_umask) -> None:
    path = write_private(tmp_path / "new" / "secret", "s3cret")
    assert path.read_text() == "s3cret"
    assert mode(path) == 0o600
    assert mode(path.parent) == 0o700


def test_an_open_file_is_replaced_by_a_private_one(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_text("old")
    path.chmod(0o644)
    write_private(path, "new")
    assert (path.read_text(), mode(path)) == ("new", 0o600)


@pytest.mark.parametrize("failing", ["fsync", "replace"])
def test_a_crash_while_writing_keeps_the_old_content(tmp_path: Path, monkeypatch, failing: str) -> None:
    path = tmp_path / "secret"
    write_private(path, "old")

    def crash(*args, **kwargs):
        raise OSError("disk gone")

    monkeypatch.setattr(os, failing, crash)
    with pytest.raises(OSError, match="disk gone"):
        write_private(path, "new")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["secret"]  # no temporary file left behind


def test_a_secret_is_created_once(tmp_path: Path) -> None:
    path = tmp_path / "key"
    first = create_private_once(path, lambda: "first")
    assert create_private_once(path, lambda: "second") == first == "first"
    assert mode(path) == 0o600


def test_racing_creators_agree_on_one_secret(tmp_path: Path) -> None:
    path = tmp_path / "key"
    with ThreadPoolExecutor(max_workers=8) as pool:
        values = set(pool.map(lambda n: create_private_once(path, lambda: f"value-{n}"), range(32)))
    assert len(values) == 1 and values == {path.read_text().strip()}


def test_an_empty_secret_left_by_a_crash_is_made_again(tmp_path: Path) -> None:
    path = tmp_path / "key"
    path.touch()
    assert create_private_once(path, lambda: "fresh") == "fresh"


def test_an_open_folder_is_closed(tmp_path: Path) -> None:
    folder = tmp_path / "state"
    folder.mkdir(mode=0o755)
    folder.chmod(0o755)
    private_dir(folder)
    assert mode(folder) == 0o700
