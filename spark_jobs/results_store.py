"""Small text objects under the batch job's results root (the report, the run history, the quarantine summary),
written and read the same way whether the root is in S3 (`s3a://` or `s3://`: boto3, from the driver) or a local
folder (`file://` or a plain path: tests, benchmarks, `--results ./out`). Spark writes the Parquet results; these
few small files go through boto3 because Spark has no "write this one string as this one object" call.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.settings import Settings

S3_SCHEMES = ("s3a://", "s3://")


def _is_s3(target: str) -> bool:
    return target.startswith(S3_SCHEMES)


def _bucket_key(target: str) -> tuple[str, str]:
    bucket, _, key = target.split("://", 1)[1].partition("/")
    return bucket, key


def _local(target: str) -> Path:
    return Path(target.removeprefix("file://"))


def _s3_client(settings: Settings):
    import boto3  # only S3 roots need it

    return boto3.client("s3", **settings.boto3_client_kwargs("s3"))


def write_text(target: str, text: str, content_type: str, settings: Settings) -> str:
    """Write `text` (UTF-8) to `target`, replacing it; returns `target`."""
    if _is_s3(target):
        bucket, key = _bucket_key(target)
        _s3_client(settings).put_object(
            Bucket=bucket, Key=key, Body=text.encode("utf-8"), ContentType=f"{content_type}; charset=utf-8"
        )
    else:
        local = _local(target)
        local.parent.mkdir(parents=True, exist_ok=True)
        local.write_text(text, encoding="utf-8")
    return target


def read_newest(folder: str, suffix: str, limit: int, settings: Settings) -> list[tuple[str, str]]:
    """(name, text) of the last `limit` objects in `folder` whose names end with `suffix`, in name order. A folder
    that does not exist yet holds nothing."""
    if _is_s3(folder):
        bucket, key = _bucket_key(folder)
        prefix = key.rstrip("/") + "/"
        client = _s3_client(settings)
        keys = [
            item["Key"]
            for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
            for item in page.get("Contents", [])
            if item["Key"].endswith(suffix)
        ]
        newest = sorted(keys)[-limit:] if limit > 0 else []
        return [
            (key.rsplit("/", 1)[-1], client.get_object(Bucket=bucket, Key=key)["Body"].read().decode("utf-8"))
            for key in newest
        ]
    local = _local(folder)
    paths = sorted(local.glob(f"*{suffix}")) if local.is_dir() else []
    return [(path.name, path.read_text(encoding="utf-8")) for path in (paths[-limit:] if limit > 0 else [])]
