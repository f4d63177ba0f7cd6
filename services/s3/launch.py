"""Start S3Proxy after moving aside the temporary files a killed S3Proxy left in its filesystem store.

Why this exists: S3Proxy's filesystem backend writes an upload to `<key>-<random UUID>` next to the final file and
renames it when the body is complete (so a reader never sees half an object). If the process is killed mid-upload,
that temporary file stays, and the next S3Proxy lists it as an object (`...json-1f0c...`), which the audit and the
Spark jobs would then read. Temporary files never got S3Proxy's ETag extended attribute (it is written after the
body), so a file whose name ends in `-<UUID4>` and has no ETag attribute is an orphan, never a stored object.
Orphans are moved (not deleted) to a quarantine folder, keeping their relative path.

Run by supervisord: `python -m services.s3.launch --store DIR --quarantine DIR -- java ... org.gaul.s3proxy.Main ...`;
it replaces itself with the command (exec), so supervisord's PID is the JVM's and a kill -9 hits S3Proxy itself.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

# S3Proxy names its temporary files `<key>-<java.util.UUID.randomUUID()>`, a version-4 UUID.
TEMP_SUFFIX = re.compile(r".-[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
# Java's UserDefinedFileAttributeView stores S3Proxy's "user.content-md5" under the Linux "user." namespace.
ETAG_XATTR = "user.user.content-md5"


def _has_etag(path: Path) -> bool:
    try:
        return ETAG_XATTR in os.listxattr(path)
    except OSError:
        return False


def find_orphans(store: Path) -> list[Path]:
    """Temporary upload files under `store` (one folder per bucket) that S3Proxy never published."""
    orphans = []
    for root, _dirs, files in os.walk(store):
        for name in files:
            path = Path(root) / name
            if TEMP_SUFFIX.search(name) and not _has_etag(path):
                orphans.append(path)
    return sorted(orphans)


def quarantine_orphans(store: Path, quarantine: Path) -> list[Path]:
    """Move every orphan to `quarantine`, keeping its path relative to the store; return the new paths."""
    moved = []
    for orphan in find_orphans(store):
        target = quarantine / orphan.relative_to(store)
        target.parent.mkdir(parents=True, exist_ok=True)
        orphan.replace(target)
        moved.append(target)
    return moved


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m services.s3.launch", description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, required=True, help="S3Proxy's jclouds.filesystem.basedir")
    parser.add_argument("--quarantine", type=Path, required=True, help="where orphaned temporary files go")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- the S3Proxy command to exec")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("missing the command to run after --")
    args.store.mkdir(parents=True, exist_ok=True)
    for moved in quarantine_orphans(args.store, args.quarantine):
        print(f"[s3] moved an unfinished upload left by a killed S3Proxy to {moved}", flush=True)
    os.execvp(command[0], command)


if __name__ == "__main__":
    main(sys.argv[1:])
