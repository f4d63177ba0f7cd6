"""Spark's Python worker daemon (`pyspark.daemon`), without a per-task cost of 0.2-0.6 s on one machine.

Spark puts `pyspark.zip`, `py4j-*-src.zip` and the spark-core jar on its Python workers' PYTHONPATH, and before
every task (`pyspark.worker_util.setup_spark_files`) calls `importlib.invalidate_caches()`. On Python 3.11 that
makes every zipimporter re-read its archive's whole central directory, the spark-core jar's included: py-spy showed
a reused worker spending 63 % of its busy time there, and the streaming job's read tasks (a few dozen records)
took 0.6 s instead of a few ms, every micro-batch and every query.

With pip-installed pyspark (our venv) those archives only duplicate what site-packages already has. So this module,
run as the daemon through `spark.python.daemon.module` (session.py does it for local masters only), drops them from
`sys.path` before anything imports pyspark, when pyspark and py4j are importable without them, and then runs
pyspark's own daemon unchanged. When they are not (a Spark distribution without pip), it changes nothing.
Written here because no Spark option turns the per-task invalidation off.

Second per-task cost: a reused worker runs a full `gc.collect()` after every task (pyspark/daemon.py), which walks
every object the process holds: pyspark, pyarrow and pandas included. py-spy showed 60 % of a worker's busy time
there during the streaming job. So the daemon imports what every worker imports anyway, then `gc.freeze()`s it
before forking (objects alive before the fork move to a generation the collector skips): a task's collection then
only walks what the task itself created.
"""

from __future__ import annotations

import gc
import importlib
import importlib.machinery
import sys

ARCHIVE_SUFFIXES = (".zip", ".jar")
REQUIRED = ("pyspark", "py4j")
# What Python data sources and Arrow UDFs load in every worker; imported once in the daemon, before gc.freeze().
PRELOAD = ("pyarrow", "pandas", "pyspark.sql.pandas.serializers", "pyspark.sql.worker.plan_data_source_read")


def without_archives(path: list[str]) -> list[str]:
    """`path` minus the zip and jar archives on it."""
    return [entry for entry in path if not entry.endswith(ARCHIVE_SUFFIXES)]


def drop_archives() -> bool:
    """Remove the archives from sys.path if pyspark and py4j import without them; True if removed."""
    kept = without_archives(sys.path)
    if kept == sys.path or not all(importlib.machinery.PathFinder.find_spec(name, kept) for name in REQUIRED):
        return False
    for entry in set(sys.path) - set(kept):
        sys.path_importer_cache.pop(entry, None)
    sys.path[:] = kept
    return True


def preload_and_freeze() -> None:
    for module in PRELOAD:
        try:
            importlib.import_module(module)
        except ImportError:
            continue
    gc.collect()
    gc.freeze()


if __name__ == "__main__":
    drop_archives()
    from pyspark import daemon

    preload_and_freeze()
    daemon.manager()
