"""The stack's command line: `python -m services.runner up|down|status|clean|run`.

Natively the services are real processes supervised by `supervisord` (from PyPI; services/supervisor.py): `up`
writes its config, asks it over its XML-RPC socket to start the programs and waits until a real request to each
passes its readiness probe (services/commands.py). In Docker mode each container runs one service with `run NAME`
(services/foreground.py). Each service lives in `services/<name>/service.py` and returns a `Service` description
(services/contract.py); `services.registry` lists them in start order.
"""

from __future__ import annotations

import argparse
import sys

from pipeline.settings import get_settings
from services.commands import clean, down, status, stop_only, up
from services.foreground import run_foreground
from services.readiness import process_states
from services.registry import all_services


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.runner", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["up", "down", "status", "clean", "run"])
    parser.add_argument("name", nargs="?", help="run: the one service to run in the foreground (a container's command)")
    parser.add_argument("--only", nargs="*", help="service names to act on (default: all)")
    args = parser.parse_args(argv)
    settings = get_settings()
    configured = services = all_services(settings)
    if args.command == "run":
        by_name = {s.name: s for s in services}
        if args.name not in by_name:
            raise SystemExit(f"run needs one service name of: {', '.join(by_name)}")
        return run_foreground(settings, by_name[args.name])
    if args.only:
        unknown = set(args.only) - {s.name for s in services}
        if unknown:
            raise SystemExit(f"unknown service(s): {', '.join(sorted(unknown))}")
        services = [s for s in services if s.name in args.only]
    else:
        running = {name for name, info in process_states(settings).items() if info["statename"] == "RUNNING"}
        services = [s for s in services if not s.on_demand or s.name in running]
    if args.command == "up":
        up(settings, configured, services)
    elif args.command == "down":
        if args.only:
            stop_only(settings, services)
        else:
            down(settings, configured)
    elif args.command == "status":
        return status(settings, services)
    else:
        clean(settings, configured)
    return 0


if __name__ == "__main__":
    sys.exit(main())
