"""`make provision` (`python -m services.provision [--dry-run] [--only STEP ...]`).

Creates every resource of the pipeline idempotently, with the same code for LocalStack and a real AWS account:
only settings differ. Each step is `step(settings, dry_run) -> list[str]` in its own module and returns the lines
that describe what it did (or, with --dry-run, would do). A step whose module does not exist yet is skipped.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time

from pipeline.settings import get_settings

# (name, "module:function"), in dependency order.
STEPS: list[tuple[str, str]] = [
    ("bucket", "services.provision.s3:provision_bucket"),
    ("topics", "services.provision.kafka:provision_topics"),
    ("connector", "services.provision.kafka:provision_connector"),
    ("streams", "services.provision.aws:provision_streams"),
    ("api", "services.provision.aws:provision_api"),
]


def _load(target: str):
    module_name, function_name = target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name == module_name:
            return None
        raise
    return getattr(module, function_name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.provision", description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    parser.add_argument("--only", nargs="*", choices=[name for name, _ in STEPS], help="steps to run")
    args = parser.parse_args(argv)
    settings = get_settings()
    print(
        f"provisioning for target={settings.pipeline_target} user={settings.pipeline_user_id}"
        + (" (dry run)" if args.dry_run else "")
    )
    for name, target in STEPS:
        if args.only and name not in args.only:
            continue
        step = _load(target)
        if step is None:
            continue
        started = time.monotonic()
        for line in step(settings, args.dry_run):
            print(f"  [{name}] {line}")
        print(f"  [{name}] done in {time.monotonic() - started:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
