"""The jobs run on EMR Serverless `emr-spark-8.0.0` (Spark 4.0.2, Delta 4.0.0) as well as on the local pyspark
4.1.1 / delta-spark 4.4.1: the job code uses nothing newer than that release offers.

- pyspark: every function, class and method the installed pyspark marks `.. versionadded:: 4.1` is found by reading
  its source; the job code (the modules the job package ships) must not import or call any of them. A method name is
  flagged only when no older definition of that name exists in pyspark (e.g. `DataFrame.transform` is from 3.0,
  `Column.transform` from 4.1), since a name alone does not tell the receiver's type.
- the streaming job's Kinesis source is a Python streaming data source: `DataSourceStreamReader` is in Spark since
  4.0.0, with the methods the reader implements.
- Delta: the job code imports only modules that delta-spark 4.0.0 ships (read from its wheel: it has no
  `delta.exceptions`, added later), and the EMR run uses the release's own Delta jars, not Maven coordinates.
"""

from __future__ import annotations

import ast
import re
import warnings
from pathlib import Path

import pyspark
from pyspark.sql.datasource import DataSourceStreamReader

from orchestration import runners
from services.provision.jobs import code_files

NEWER_THAN_EMR = re.compile(r"versionadded::?\s*4\.[1-9]")
# The modules of the delta-spark 4.0.0 wheel (delta_spark-4.0.0-py3-none-any.whl from PyPI).
DELTA_4_0_MODULES = {
    "delta",
    "delta._typing",
    "delta.connect",
    "delta.connect._typing",
    "delta.connect.exceptions",
    "delta.connect.plan",
    "delta.connect.tables",
    "delta.pip_utils",
    "delta.tables",
}
FUNCTIONS_MODULES = ("pyspark.sql.functions", "pyspark.sql.connect.functions")


def _definitions(node: ast.AST, owner: str):
    for child in getattr(node, "body", []):
        if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            newer = bool(NEWER_THAN_EMR.search(ast.get_docstring(child) or ""))
            yield owner, child.name, newer, isinstance(child, ast.ClassDef) or owner.endswith(".py")
            if isinstance(child, ast.ClassDef):
                yield from _definitions(child, f"{owner}:{child.name}")


def pyspark_definitions() -> list[tuple[str, str, bool, bool]]:
    """(where, name, added after 4.0, module level) of every definition in the installed pyspark."""
    root = Path(pyspark.__file__).parent
    found = []
    for path in root.rglob("*.py"):
        if "tests" in path.parts:
            continue
        with warnings.catch_warnings():  # pyspark's sources hold a few invalid escapes in docstrings
            warnings.simplefilter("ignore")
            tree = ast.parse(path.read_text(encoding="utf-8"))
        found += _definitions(tree, path.relative_to(root).as_posix())
    return found


def job_trees() -> dict[str, ast.AST]:
    return {name: ast.parse(path.read_text()) for name, path in code_files()}


def test_the_job_code_uses_no_pyspark_api_newer_than_the_emr_release() -> None:
    definitions = pyspark_definitions()
    newer_names = {name for _, name, newer, _ in definitions if newer}
    older_names = {name for _, name, newer, _ in definitions if not newer}
    newer_functions = {
        name for where, name, newer, _ in definitions if newer and where.startswith("sql/functions/")
    } | {name for where, name, newer, _ in definitions if newer and where == "sql/functions.py"}
    assert "uuid" in newer_functions  # the scan finds 4.1's additions (pyspark.sql.functions.uuid is one)

    offenders = []
    for module, tree in job_trees().items():
        aliases = {
            alias.asname or alias.name: node.module + "." + alias.name
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("pyspark")
            for alias in node.names
        }
        aliases |= {
            alias.asname or alias.name: alias.name
            for node in ast.walk(tree)
            if isinstance(node, ast.Import)
            for alias in node.names
            if alias.name.startswith("pyspark")
        }
        for target in aliases.values():
            source, _, name = target.rpartition(".")
            if name in (newer_functions if source in FUNCTIONS_MODULES else newer_names - older_names):
                offenders.append(f"{module}: imports {target}, newer than Spark 4.0")
        for node in ast.walk(tree):
            if not isinstance(node, ast.Attribute):
                continue
            owner = aliases.get(ast.unparse(node.value), "")
            if owner in FUNCTIONS_MODULES and node.attr in newer_functions:
                offenders.append(f"{module}:{node.lineno}: {owner}.{node.attr} is newer than Spark 4.0")
            elif node.attr in newer_names - older_names:
                offenders.append(f"{module}:{node.lineno}: .{node.attr} is newer than Spark 4.0")
    assert not offenders, "\n".join(offenders)


def test_the_kinesis_source_uses_the_python_streaming_data_source_of_spark_4_0() -> None:
    assert re.search(r"versionadded:?:?\s*4\.0\.0", DataSourceStreamReader.__doc__ or "")
    tree = job_trees()["spark_jobs/kinesis_source.py"]
    (reader,) = [
        node for node in ast.walk(tree) if isinstance(node, ast.ClassDef) and node.name == "KinesisStreamReader"
    ]
    overridden = {
        node.name for node in reader.body if isinstance(node, ast.FunctionDef) and not node.name.startswith("_")
    }
    api = {name for name in vars(DataSourceStreamReader) if not name.startswith("_")}
    assert overridden & api == {"initialOffset", "latestOffset", "partitions", "read", "commit", "stop"}


def test_the_job_code_imports_only_delta_modules_of_delta_4_0() -> None:
    imported = {
        node.module
        for tree in job_trees().values()
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "delta"
    } | {
        alias.name
        for tree in job_trees().values()
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
        if alias.name.split(".")[0] == "delta"
    }
    assert imported and imported <= DELTA_4_0_MODULES, imported - DELTA_4_0_MODULES


def test_the_emr_run_uses_the_release_s_own_spark_and_delta() -> None:
    assert (runners.EMR_SERVERLESS_RELEASE, runners.EMR_SPARK_VERSION, runners.EMR_DELTA_VERSION) == (
        "emr-spark-8.0.0",
        "4.0.2",
        "4.0.0",
    )
    assert all(jar.startswith("/usr/share/aws/delta/lib/") for jar in runners.EMR_DELTA_JARS)
    from pipeline.settings import load_settings

    parameters = runners.emr_spark_submit_parameters(load_settings(_env_file=None))
    assert "--packages" not in parameters and "io.delta:" not in parameters
    assert f"--conf spark.jars={','.join(runners.EMR_DELTA_JARS)}" in parameters
    assert load_settings(_env_file=None).emr_serverless_release == runners.EMR_SERVERLESS_RELEASE
