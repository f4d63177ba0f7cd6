"""The MariaDB service's description (services/mysql/service.py) without a server: it never runs as root, file
access is confined, and the application user's grants name the project's databases only."""

from __future__ import annotations

import os
import pwd
import re
import stat
from pathlib import Path

import pytest

from pipeline.settings import Settings, load_settings
from services.mysql import service as mysql

# Every database the seed and the integration tests create (tests/integration) with the default MYSQL_DATABASE.
PROJECT_DATABASES = [
    "pinterest_data",
    "pinterest_data_test",
    "pinterest_data_batch_test",
    "pinterest_data_e2e",
    "pinterest_data_gateway",
    "pinterest_data_stream",
]
OTHER_DATABASES = ["mysql", "information_schema", "performance_schema", "sys", "test", "pinterestXdata", "other"]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(_env_file=None, state_dir=tmp_path / "state")


def like(pattern: str, name: str) -> bool:
    """MySQL's LIKE as GRANT applies it to a database pattern: `%`, `_`, and `\\` escaping the next character."""
    regex = "".join(
        re.escape(token[1]) if token.startswith("\\") else {"%": ".*", "_": "."}.get(token, re.escape(token))
        for token in re.findall(r"\\.|.", pattern)
    )
    return re.fullmatch(regex, name) is not None


def granted(settings: Settings) -> list[str]:
    statements = [sql for sql, _ in mysql.privilege_statements(settings) if sql.startswith("GRANT")]
    return [re.search(r"ON `(.*)`\.\* TO", sql).group(1).replace("%%", "%") for sql in statements]


def test_the_app_user_is_granted_the_project_databases_only(settings: Settings) -> None:
    patterns = set(granted(settings))
    assert patterns == set(mysql.database_patterns(settings))
    for name in PROJECT_DATABASES:
        assert any(like(p, name) for p in patterns), name
    for name in OTHER_DATABASES:
        assert not any(like(p, name) for p in patterns), name


def test_no_global_right_and_old_rights_are_revoked(settings: Settings) -> None:
    statements = [sql for sql, _ in mysql.privilege_statements(settings)]
    assert not any("*.*" in sql or "FILE" in sql for sql in statements)
    for host in mysql.APP_USER_HOSTS:
        calls = [sql for sql, params in mysql.privilege_statements(settings) if params[1:2] == (host,)]
        revoke = calls.index("REVOKE ALL PRIVILEGES, GRANT OPTION FROM %s@%s")
        assert revoke < min(i for i, sql in enumerate(calls) if sql.startswith("GRANT"))


def test_server_file_access_is_confined(settings: Settings) -> None:
    command = mysql.service(settings).command
    (confined,) = [arg.split("=", 1)[1] for arg in command if arg.startswith("--secure-file-priv=")]
    assert confined == str(mysql.files_dir(settings))


def test_started_as_root_the_server_runs_as_the_server_account(settings: Settings, monkeypatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    command = mysql.service(settings).command
    assert "--user=root" not in command
    assert f"--user={settings.mysql_server_user}" in command


def test_a_root_server_account_is_refused(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    with pytest.raises(SystemExit, match="unprivileged"):
        mysql.server_account(load_settings(_env_file=None, state_dir=tmp_path, mysql_server_user="root"))


@pytest.mark.skipif(os.geteuid() != 0, reason="handing folders to another account needs root")
def test_prepare_hands_the_datadir_to_the_server_account(settings: Settings, monkeypatch) -> None:
    account = pwd.getpwnam(settings.mysql_server_user)
    monkeypatch.setattr(mysql, "_find", lambda names: "/bin/true")  # no install-db: the folders are the point
    old = mysql.datadir(settings) / "old-root-file"
    old.parent.mkdir(parents=True)
    old.touch()
    mysql.prepare(settings)
    for folder in (mysql.datadir(settings), mysql.files_dir(settings)):
        info = folder.stat()
        assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (account.pw_uid, 0o700)
    assert old.stat().st_uid == account.pw_uid
    for folder in (settings.state_dir, settings.data_dir):
        info = folder.stat()
        assert (info.st_gid, stat.S_IMODE(info.st_mode)) == (account.pw_gid, 0o710)  # traverse, no listing
