"""`python -m services.audit` (`make verify`): is every Kafka offset in S3 exactly once, and did every record the
emulator sent land as its ledger says (Kafka path: the bucket; Kinesis path: the Delta tables)?

The command line of services/audit/sink_audit.py (the offset audit) and services/audit/ledger_audit.py (the
ledger audit). Exit status 0 only when nothing is missing, duplicated, unexpected, lost or doubled; 1 otherwise;
2 when Kafka or S3 stays down for the whole `--wait`.
"""

from __future__ import annotations

import argparse
import sys

from botocore.exceptions import BotoCoreError, ClientError
from kafka.errors import KafkaError

from pipeline.settings import get_settings
from services.audit import ledger_audit
from services.audit.sink_audit import Unreachable, audit_until_complete, render


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.audit", description=__doc__.splitlines()[0])
    parser.add_argument("--wait", type=float, default=30.0, help="seconds to wait for missing records (default 30)")
    parser.add_argument("--topic", action="append", help="audit only this topic (repeatable; skips the ledger audit)")
    parser.add_argument("--warehouse", help="the streaming job's Delta tables' root (default: s3a://<bucket>/delta)")
    args = parser.parse_args(argv)
    settings = get_settings()
    try:
        if args.topic:  # the offset audit of these topics alone
            report = audit_until_complete(settings, args.wait, args.topic)
            print(render(settings, report))
            return 0 if report.clean else 1
        report, ledger = ledger_audit.verify(settings, args.wait, args.warehouse or settings.warehouse_uri)
    except Unreachable as error:
        print(f"audit FAILED: {error}", file=sys.stderr)
        return 2
    except (BotoCoreError, ClientError, KafkaError, OSError) as error:
        print(f"ledger audit FAILED: could not read Kafka, S3 or the Delta tables: {error}", file=sys.stderr)
        return 2
    print(render(settings, report))
    print()
    print(ledger_audit.render(ledger))
    return 0 if report.clean and ledger.clean else 1


if __name__ == "__main__":
    sys.exit(main())
