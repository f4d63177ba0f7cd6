"""The S3 store's launcher moves aside only the temporary upload files a killed S3Proxy left behind."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from pipeline.settings import REPO_ROOT
from services.s3.launch import ETAG_XATTR, find_orphans, quarantine_orphans

KEY = "topics/0a1b2c3d4e5f.pin/partition=0/0a1b2c3d4e5f.pin+0+0000000000.json"


def put(store: Path, key: str, etag: bool) -> Path:
    path = store / "user-0a1b2c3d4e5f-bucket" / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('{"ind": 1}\n')
    if etag:
        os.setxattr(path, ETAG_XATTR, bytes(16))
    return path


@pytest.fixture
def store(tmp_path: Path) -> Path:
    probe = tmp_path / "probe"
    probe.touch()
    try:
        os.setxattr(probe, "user.probe", b"1")
    except OSError:
        pytest.skip("this filesystem has no user extended attributes (S3Proxy's filesystem store needs them)")
    return tmp_path / "s3"


def test_only_unpublished_temporary_files_are_orphans(store):
    published = put(store, KEY, etag=True)
    orphan = put(store, f"{KEY}-{uuid.uuid4()}", etag=False)
    published_uuid_named = put(store, f"{KEY}-{uuid.uuid4()}", etag=True)
    no_suffix_without_etag = put(store, "copied/without/xattrs.json", etag=False)
    multipart_stub = put(store, str(uuid.uuid4()), etag=False)
    assert find_orphans(store) == [orphan]
    for kept in (published, published_uuid_named, no_suffix_without_etag, multipart_stub):
        assert kept.exists()


def test_orphans_are_moved_keeping_their_path(store, tmp_path):
    orphan = put(store, f"{KEY}-{uuid.uuid4()}", etag=False)
    moved = quarantine_orphans(store, tmp_path / "quarantine")
    assert not orphan.exists()
    assert moved == [tmp_path / "quarantine" / orphan.relative_to(store)]
    assert moved[0].read_text() == '{"ind": 1}\n'
    assert find_orphans(store) == []


def test_launcher_sweeps_then_runs_the_command(store, tmp_path):
    orphan = put(store, f"{KEY}-{uuid.uuid4()}", etag=False)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "services.s3.launch",
            f"--store={store}",
            f"--quarantine={tmp_path / 'q'}",
            "--",
            sys.executable,
            "-c",
            "print('s3proxy would start here')",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert not orphan.exists()
    assert "moved an unfinished upload" in result.stdout
    assert result.stdout.rstrip().endswith("s3proxy would start here")
