"""Every socket the native stack's processes listen on is on the configured host (BIND_HOST), including the ports a
service opens besides its own (Kafka's controller, Spark's driver and block manager, Python workers, ...): found from
supervisord's process table, each program's whole process tree and `ss`. Docker mode publishes nothing: its
containers use the host's network (docker-compose.yml) and run the same service definitions."""

from __future__ import annotations

import ipaddress
import re
import socket
import subprocess
from pathlib import Path

import pytest

from services.supervisor import program_states


def _children() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue  # the process ended meanwhile
        children.setdefault(parent, []).append(int(stat.parent.name))
    return children


def _owners(settings) -> dict[int, str]:
    """pid -> the supervised program whose process tree it belongs to."""
    children, owners = _children(), {}
    for name, info in program_states(settings).items():
        todo = [info["pid"]] if info.get("pid") else []
        while todo:
            pid = todo.pop()
            owners[pid] = name
            todo += children.get(pid, [])
    return owners


def _host(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    host = address.rsplit(":", 1)[0].strip("[]").split("%")[0]
    parsed = ipaddress.ip_address("0.0.0.0" if host == "*" else host)
    return getattr(parsed, "ipv4_mapped", None) or parsed


def test_every_listening_socket_of_the_stack_is_on_the_bind_host(stack_control, settings) -> None:
    if stack_control.mode != "native":
        pytest.skip("Docker mode: the containers' processes are not in supervisord's table")
    owners = _owners(settings)
    assert "mysql" in set(owners.values()), "the stack is not running: run `make up`"
    allowed = {ipaddress.ip_address(info[4][0]) for info in socket.getaddrinfo(settings.bind_host, None)}
    listening = subprocess.run(["ss", "-Hlntup"], capture_output=True, text=True, check=True).stdout.splitlines()
    found, elsewhere = set(), []
    for line in listening:
        fields = line.split()
        for pid in map(int, re.findall(r"pid=(\d+)", line)):
            if pid in owners:
                found.add(owners[pid])
                if _host(fields[4]) not in allowed:
                    elsewhere.append(f"{owners[pid]} (pid {pid}) listens on {fields[0]} {fields[4]}")
    assert not elsewhere, "\n".join(elsewhere)
    assert {"mysql", "kafka", "localstack", "rest_proxy"} <= found
