"""Private files and folders of the state folder: secrets (Airflow's keys and login, the API key, supervisord's
config) live in 0600 files under 0700 folders and are written atomically.

Written here rather than taken from a library: the known one (atomicwrites) is archived by its author, and the whole
job is `tempfile.mkstemp` (the file is created 0600, so a secret is never readable by others, not even for a moment,
and is never chmodded after the fact) + fsync + `os.replace` (atomic on POSIX: a reader, or the next start after a
crash, sees the old or the new content, never an empty or partial file). `create_private_once` publishes with
`os.link`, which fails when the name exists, so two processes creating the same secret agree on the first one.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path

PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600


def private_dir(path: Path) -> Path:
    """`mkdir -p` the folder with mode 0700 and take every right of others and of the owner's own group off an
    existing one. A traverse right (g+x) given to another group is kept: the MariaDB account's, which must reach its
    datadir through the state folder when the stack runs as root (services/mysql)."""
    path.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR_MODE)
    info = path.stat()
    mode = stat.S_IMODE(info.st_mode)
    keep_traverse = info.st_gid != _primary_gid(info.st_uid)
    wanted = (mode & 0o700) | (mode & stat.S_IXGRP if keep_traverse else 0)
    if mode != wanted:
        path.chmod(wanted)
    return path


def _primary_gid(uid: int) -> int | None:
    try:
        return pwd.getpwuid(uid).pw_gid
    except KeyError:  # an owner without a passwd entry (a container's uid): its group is no deliberate grant either
        return None


def _temporary(path: Path, text: str) -> Path:
    """The content in a new 0600 file next to `path` (same filesystem, so it can be renamed onto it), synced."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR_MODE)
    descriptor, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
    return Path(name)


def _sync_dir(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def write_private(path: Path, text: str) -> Path:
    """Replace `path` atomically with `text` in a 0600 file (readers see the old or the new content, never less)."""
    temporary = _temporary(path, text)
    try:
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    _sync_dir(path.parent)
    return path


def create_private_once(path: Path, make: Callable[[], str]) -> str:
    """The content of `path`, created first (0600, atomically) from `make()` when it does not exist; when two
    processes race, both return the first one's content. A file left empty by an older, non-atomic writer is
    replaced."""
    with contextlib.suppress(FileNotFoundError):
        existing = path.read_text(encoding="utf-8").strip()
        if existing:
            return existing
        path.unlink()
    temporary = _temporary(path, make() + "\n")
    try:
        os.link(temporary, path)
    except FileExistsError:
        pass
    finally:
        temporary.unlink(missing_ok=True)
    _sync_dir(path.parent)
    return path.read_text(encoding="utf-8").strip()
