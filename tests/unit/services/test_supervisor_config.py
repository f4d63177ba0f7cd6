"""supervisord's config as the native stack writes it (services/supervisor.py), read back by supervisord's own
parser: every environment value survives (quotes, `%`, commas), the file is private, and no secret is in it."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from supervisor.options import ServerOptions

from pipeline.settings import Settings, load_settings
from services.contract import Service
from services.registry import all_services
from services.supervisor import write_supervisor_config

AWKWARD = {
    "DOUBLE_QUOTES": 'say "hi" now',
    "SINGLE_QUOTE": "it's",
    "PERCENT": "100% of %(here)s",
    "COMMAS": "a,b=c,d",
    "SPACES": "/path with spaces/x",
    "EMPTY": "",
}


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(_env_file=None, state_dir=tmp_path / "state", airflow_admin_password=None)


def demo(env: dict[str, str]) -> Service:
    return Service(name="demo", command=["echo", "50%", "a b"], ports=(), ready=lambda s: None, where="-", env=env)


def parsed(conf: Path) -> dict[str, object]:
    """Program name -> its process config, as supervisord itself reads the file."""
    options = ServerOptions()
    options.configfile = str(conf)
    options.process_config(do_usage=False)
    return {group.name: group.process_configs[0] for group in options.process_group_configs}


def test_environment_values_survive_supervisords_parser(settings: Settings) -> None:
    program = parsed(write_supervisor_config(settings, [demo(AWKWARD)]))["demo"]
    assert program.environment == {"PYTHONUNBUFFERED": "1", **AWKWARD}
    assert program.command == "echo 50% 'a b'"


@pytest.mark.parametrize("value", ["both ' and \"", '"quoted at the ends"', "line\nbreak", "a ;comment"])
def test_a_value_the_syntax_cannot_carry_is_refused(settings: Settings, value: str) -> None:
    with pytest.raises(SystemExit, match="cannot carry"):
        write_supervisor_config(settings, [demo({"VALUE": value})])


def test_the_config_is_private_and_holds_no_secret(settings: Settings) -> None:
    services = all_services(settings)
    conf = write_supervisor_config(settings, services)
    assert stat.S_IMODE(conf.stat().st_mode) == 0o600
    text = conf.read_text()
    secrets_dir = settings.state_dir / "airflow" / "secrets"
    secrets = [path.read_text().strip() for path in secrets_dir.iterdir()]
    assert len(secrets) == 3
    for secret in secrets:
        assert secret not in text
    assert "SECRET=" not in text and "FERNET_KEY=" not in text
    parsed(conf)  # and supervisord reads it
