"""The job package's entry file on EMR Serverless and Databricks (uploaded as `jobs/entry.py` by `make provision`).

    entry.py --code s3a://<bucket>/jobs/code.zip [--setting NAME=VALUE ...] {batch|stream} [job arguments]

A runner starts one Python file; the project's code is the zip next to it. This file therefore imports only the
standard library and pyspark until it has added the zip to the session (`addPyFile` ships it to the executors too),
then runs the job's own `main` with the job's arguments. The settings the job reads come as `--setting` pairs
(a runner's environment is not ours to configure on an existing Databricks cluster) and `SPARK_JARS=cluster` says
that hadoop-aws and Delta are the cluster's, so the job skips the local jar check.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import tempfile

JOB_MODULES = {"batch": "spark_jobs.batch", "stream": "spark_jobs.stream"}


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(prog="entry.py", description=__doc__.splitlines()[0])
    parser.add_argument("--code", default=None, help="the project's code zip (any Hadoop URI); none: on the path")
    parser.add_argument("--setting", action="append", default=[], metavar="NAME=VALUE", help="a pipeline setting")
    parser.add_argument("job", choices=sorted(JOB_MODULES))
    args, job_args = parser.parse_known_args(argv)
    for pair in args.setting:
        name, sep, _ = pair.partition("=")
        if not sep or not name:
            parser.error(f"--setting {pair!r}: expected NAME=VALUE")
    return args, job_args


def cluster_environment(settings: list[str]) -> dict[str, str]:
    """The environment the job's settings are read from on the cluster. The state folder (the streaming job's status
    file) goes to the driver's temporary folder: the default, next to the code, is inside the code zip there."""
    state = os.path.join(tempfile.gettempdir(), "pipeline-state")
    return {"STATE_DIR": state, **dict(pair.split("=", 1) for pair in settings), "SPARK_JARS": "cluster"}


def main(argv: list[str] | None = None) -> int:
    args, job_args = parse_args(sys.argv[1:] if argv is None else argv)
    os.environ.update(cluster_environment(args.setting))
    if args.code:
        from pyspark.sql import SparkSession

        SparkSession.builder.getOrCreate().sparkContext.addPyFile(args.code)
    return importlib.import_module(JOB_MODULES[args.job]).main(job_args)


if __name__ == "__main__":
    sys.exit(main())
