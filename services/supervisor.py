"""supervisord, the native stack's process supervisor (from PyPI): its config file, its XML-RPC socket and the
state of the programs it runs. Nothing here knows the command line or which services exist."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import time
import xmlrpc.client
from pathlib import Path

from pipeline.private import write_private
from pipeline.settings import Settings
from services.contract import Service


def log_file(settings: Settings, name: str) -> Path:
    return settings.log_dir / f"{name}.log"


def conf_path(settings: Settings) -> Path:
    return settings.run_dir / "supervisord.conf"


def _socket_path(settings: Settings) -> Path:
    return settings.run_dir / "supervisor.sock"


def pid_path(settings: Settings) -> Path:
    return settings.run_dir / "supervisord.pid"


def _quote(arg: str) -> str:
    # supervisor splits `command` with shlex; percent signs are config interpolation.
    return _no_inline_comment(shlex.quote(arg).replace("%", "%%"), arg)


def _no_inline_comment(text: str, value: str) -> str:
    # supervisord's ini parser ends a value at ` ;` or ` #` (inline comments), quoted or not.
    if re.search(r"\s[;#]", text) or "\n" in text or "\r" in text:
        raise SystemExit(f"supervisord's config cannot carry {value!r} (a line break, or ';'/'#' after a space)")
    return text


ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
QUOTES = "'\""


def env_line(env: dict[str, str]) -> str:
    """supervisord's `environment=KEY="val",KEY2="val2"`. Its parser (supervisor.datatypes.dict_of_key_value_pairs:
    a non-POSIX shlex, then strip of quote characters at both ends) has no escapes: a value is quoted with the quote
    character it does not contain; `%` is doubled (the line goes through Python %-interpolation). What the syntax
    cannot carry (both quote characters, a quote at either end, a line break) is refused, not silently changed."""
    items = []
    for key, value in env.items():
        if not ENV_NAME.match(key):
            raise SystemExit(f"not an environment variable name: {key!r}")
        quote = '"' if '"' not in value else "'"
        if quote in value or (value and (value[0] in QUOTES or value[-1] in QUOTES)):
            raise SystemExit(f"supervisord's environment syntax cannot carry {key}={value!r}")
        items.append(f"{key}={quote}{value.replace('%', '%%')}{quote}")
    return _no_inline_comment(",".join(items), str(env))


def write_supervisor_config(settings: Settings, services: list[Service]) -> Path:
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    settings.log_dir.mkdir(parents=True, exist_ok=True)
    lines = [
        "[unix_http_server]",
        f"file={_socket_path(settings)}",
        "chmod=0700",
        "",
        "[supervisord]",
        f"logfile={settings.log_dir / 'supervisord.log'}",
        f"pidfile={pid_path(settings)}",
        f"directory={settings.state_dir}",
        "logfile_maxbytes=10MB",
        "logfile_backups=2",
        "",
        "[rpcinterface:supervisor]",
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
        "",
        "[supervisorctl]",
        f"serverurl=unix://{_socket_path(settings)}",
        "",
    ]
    base_env = {"PYTHONUNBUFFERED": "1"}
    for service in services:
        env = {**base_env, **service.env}
        lines += [
            f"[program:{service.name}]",
            "command=" + " ".join(_quote(arg) for arg in service.command),
            f"directory={service.directory or settings.state_dir}",
            "autostart=false",
            "autorestart=unexpected",
            "startsecs=1",
            "startretries=1",
            f"stopwaitsecs={service.stop_timeout}",
            *([f"stopsignal={service.stop_signal}"] if service.stop_signal != "TERM" else []),
            "stopasgroup=true",
            "killasgroup=true",
            "redirect_stderr=true",
            f"stdout_logfile={log_file(settings, service.name)}",
            "stdout_logfile_maxbytes=20MB",
            "stdout_logfile_backups=2",
            f"environment={env_line(env)}",
            "",
        ]
    # 0600 and written atomically: a reader never sees half a config (and services' settings stay private).
    return write_private(conf_path(settings), "\n".join(lines))


def rpc(settings: Settings):
    from supervisor.xmlrpc import SupervisorTransport

    transport = SupervisorTransport(None, None, f"unix://{_socket_path(settings)}")
    return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)


def supervisor_running(settings: Settings) -> bool:
    if not _socket_path(settings).exists():
        return False
    try:
        return rpc(settings).supervisor.getState()["statename"] == "RUNNING"
    except (OSError, xmlrpc.client.Fault):
        return False


def supervisor_bin(name: str) -> str:
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


def start_supervisor(settings: Settings, conf: Path) -> None:
    if supervisor_running(settings):
        subprocess.run([supervisor_bin("supervisorctl"), "-c", str(conf), "update"], check=True, capture_output=True)
        return
    _socket_path(settings).unlink(missing_ok=True)
    subprocess.run([supervisor_bin("supervisord"), "-c", str(conf)], check=True)
    deadline = time.monotonic() + 10
    while not supervisor_running(settings):
        if time.monotonic() > deadline:
            raise SystemExit(f"supervisord did not start; see {settings.log_dir / 'supervisord.log'}")
        time.sleep(0.1)


def program_states(settings: Settings) -> dict[str, dict]:
    """supervisord's view of its programs, by name (empty when it is not running)."""
    if not supervisor_running(settings):
        return {}
    return {info["name"]: info for info in rpc(settings).supervisor.getAllProcessInfo()}


def stop_if_active(server, name: str, state: str | None) -> bool:
    """Stop one supervised process (waiting for it) if it is running or starting; False when it was not."""
    if state not in ("RUNNING", "STARTING", "BACKOFF"):
        return False
    print(f"  stopping {name}", flush=True)
    try:
        server.supervisor.stopProcess(name, True)
    except xmlrpc.client.Fault as fault:
        print(f"  {name}: {fault.faultString}")
    return True
