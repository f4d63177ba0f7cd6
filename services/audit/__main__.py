"""`python -m services.audit` (`make verify`): is every Kafka offset in S3 exactly once?

The command line of services/audit/sink_audit.py. Exit status 0 only when nothing is missing, duplicated or
unexpected; 1 otherwise; 2 when Kafka or S3 stays down for the whole `--wait`.
"""

from __future__ import annotations

import argparse
import sys

from pipeline.settings import get_settings
from services.audit.sink_audit import Unreachable, audit_until_complete, render


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.audit", description=__doc__.splitlines()[0])
    parser.add_argument("--wait", type=float, default=30.0, help="seconds to wait for missing offsets (default 30)")
    parser.add_argument("--topic", action="append", help="audit only this topic (repeatable)")
    args = parser.parse_args(argv)
    settings = get_settings()
    try:
        report = audit_until_complete(settings, args.wait, args.topic)
    except Unreachable as error:
        print(f"audit FAILED: {error}", file=sys.stderr)
        return 2
    print(render(settings, report))
    return 0 if report.clean else 1


if __name__ == "__main__":
    sys.exit(main())
