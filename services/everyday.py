"""The everyday commands, in either mode, through the one stack abstraction (services/stack.py):

    make logs [SERVICE=name] [FOLLOW=1] [LINES=40]   a service's log (or every service's), optionally followed
    make restart SERVICE=name                         restart one service and wait until it is ready again
    make open                                         the console's URL (opened in a browser when there is one)
    make trace IND=<n>                                where a source row went (services/console/trace.py)

`python -m services.everyday next` prints what to do after `make up` (its last lines).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import webbrowser

from services.stack import ComposeStack, StackError, current_stack, stack_mode, stack_settings


def _names(stack) -> list[str]:
    from services.registry import all_services

    return [service.name for service in all_services(stack.settings)]


def _check_name(stack, name: str) -> None:
    names = _names(stack)
    if name not in names:
        raise SystemExit(f"unknown service {name!r}; the stack's services: {', '.join(names)}")


def logs(service: str | None, follow: bool, lines: int) -> int:
    mode = stack_mode()
    stack = current_stack(stack_settings(mode), mode)
    names = [service] if service else _names(stack)
    if service:
        _check_name(stack, service)
    if isinstance(stack, ComposeStack):
        command = stack.compose_command("logs", f"--tail={lines}", *(["--follow"] if follow else []), *names)
        return subprocess.call(command, env=stack.env)
    from services.supervisor import log_file

    files = [str(log_file(stack.settings, name)) for name in names if log_file(stack.settings, name).exists()]
    if not files:
        print(f"no log yet in {stack.settings.log_dir} (is the stack up? make up)")
        return 1
    # tail prints a "==> file <==" header per file when there are several, so the lines say which service
    return subprocess.call(["tail", f"-n{lines}", *(["-F"] if follow else []), *files])


def restart(service: str) -> int:
    mode = stack_mode()
    stack = current_stack(stack_settings(mode), mode)
    _check_name(stack, service)
    print(f"restarting {service} ({mode} mode)", flush=True)
    try:
        stack.restart(service)
        seconds = stack.wait_ready(service)
    except StackError as error:
        print(f"restart of {service} failed: {error}\nits log: {stack.log_hint(service)}", file=sys.stderr)
        return 1
    print(f"{service} is ready again ({seconds:.1f} s)")
    if service == "localstack":  # LocalStack forgets the API it served: provision it again, as `make up` does
        from services.stack import provision_stack_api

        provision_stack_api()
        print("the API Gateway API is provisioned again")
    return 0


def console_url() -> str:
    mode = stack_mode()
    return stack_settings(mode).console_url


def open_console() -> int:
    url = console_url()
    print(f"console: {url}")
    has_display = os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY") or sys.platform == "darwin"
    if has_display and (shutil.which("xdg-open") or sys.platform == "darwin"):
        webbrowser.open(url)
    return 0


def next_steps() -> int:
    url = console_url()
    print(
        "\nThe stack is up. Next:\n"
        "  make seed                      fill the MySQL source (11,154 rows per table)\n"
        "  make emulate                   post 100 users' posts on the batch path (MODE=stream for Kinesis)\n"
        "  make stream                    start the streaming job (Kinesis -> Delta)\n"
        "  make batch                     run the Spark batch job now (Airflow runs it daily)\n"
        "  make verify                    audit: every record landed exactly once\n"
        f"  console                        {url}  (make open)\n"
        "  make status / make logs        what runs, and its logs (SERVICE=name FOLLOW=1)"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.everyday", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    log_parser = commands.add_parser("logs")
    log_parser.add_argument("--service")
    log_parser.add_argument("--follow", action="store_true")
    log_parser.add_argument("--lines", type=int, default=40)
    commands.add_parser("restart").add_argument("service")
    commands.add_parser("open")
    commands.add_parser("next")
    args = parser.parse_args(argv)
    if args.command == "logs":
        return logs(args.service or None, args.follow, args.lines)
    if args.command == "restart":
        return restart(args.service)
    if args.command == "open":
        return open_console()
    return next_steps()


if __name__ == "__main__":
    sys.exit(main())
