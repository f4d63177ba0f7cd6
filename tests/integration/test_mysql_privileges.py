"""Least privilege of the MySQL source on the running MariaDB (services/mysql/service.py): the application user
reaches the project's databases and nothing else (no FILE right: LOAD_FILE reads nothing; no database outside
`MYSQL_DATABASE[_*]`), no anonymous account exists, server-side file access is confined, and the server process is
not root."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pymysql
import pytest

from services.mysql import seed

OUTSIDE_DATABASE = "privilege_check_outside"


@pytest.fixture(scope="module")
def app(stack_control, settings):
    # Over TCP as the application user, as the pipeline connects (not the service's probe: it uses the socket).
    if not stack_control.running("mysql"):
        pytest.fail("service mysql is not running: run `make up`, then `make status`")
    connection = seed.connect(settings, autocommit=True)
    yield connection
    connection.close()


def test_the_app_user_cannot_read_server_files(app) -> None:
    with app.cursor() as cursor:
        try:
            cursor.execute("SELECT LOAD_FILE('/etc/passwd')")
            content = cursor.fetchone()[0]
        except pymysql.MySQLError:
            content = None
        assert content is None, "the application user read /etc/passwd through the server"
        cursor.execute("SELECT @@secure_file_priv")
        confined = cursor.fetchone()[0]
    assert confined and Path(confined).name == "mysql-files", f"secure_file_priv is {confined!r}"


def test_the_app_user_cannot_create_a_database_outside_the_project(app) -> None:
    with app.cursor() as cursor:
        try:
            with pytest.raises(pymysql.err.OperationalError) as refused:
                cursor.execute(f"CREATE DATABASE `{OUTSIDE_DATABASE}`")
        finally:
            with contextlib.suppress(pymysql.err.OperationalError):  # denied too, unless the create went through
                cursor.execute(f"DROP DATABASE IF EXISTS `{OUTSIDE_DATABASE}`")
    assert refused.value.args[0] == 1044  # ER_DBACCESS_DENIED_ERROR


def test_the_app_user_owns_the_project_and_test_databases(app, settings) -> None:
    scratch = f"{settings.mysql_database}_privilege_check"
    with app.cursor() as cursor:
        for database in (settings.mysql_database, scratch):
            cursor.execute(f"CREATE DATABASE IF NOT EXISTS `{database}`")
            cursor.execute(f"CREATE TABLE IF NOT EXISTS `{database}`.`probe` (id INT PRIMARY KEY)")
            cursor.execute(f"REPLACE INTO `{database}`.`probe` VALUES (1)")
            cursor.execute(f"SELECT id FROM `{database}`.`probe`")
            assert cursor.fetchall() == ((1,),)
            cursor.execute(f"DROP TABLE `{database}`.`probe`")
        cursor.execute(f"DROP DATABASE `{scratch}`")


def test_there_is_no_anonymous_account(app, stack_control, settings) -> None:
    if stack_control.mode != "native":
        pytest.skip("the server's socket is inside the container")
    with app.cursor() as cursor:
        cursor.execute("SELECT @@socket")
        socket = cursor.fetchone()[0]
    root = pymysql.connect(unix_socket=socket, user="root")
    with root, root.cursor() as cursor:
        cursor.execute("SELECT User, Host FROM mysql.user WHERE User = ''")
        assert cursor.fetchall() == ()
        cursor.execute(
            "SELECT DISTINCT User FROM mysql.user WHERE File_priv = 'Y' OR Super_priv = 'Y' OR Grant_priv = 'Y'"
        )
        assert settings.mysql_user not in {user for (user,) in cursor.fetchall()}


def test_the_server_does_not_run_as_root(stack_control) -> None:
    if stack_control.mode != "native":
        pytest.skip("the container's process ids are not the host's")
    pid = stack_control.instance("mysql")
    status = Path(f"/proc/{pid}/status").read_text()
    assert Path(f"/proc/{pid}/exe").resolve().name in ("mariadbd", "mysqld")
    uids = next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1:]
    assert "0" not in uids, f"mariadbd (pid {pid}) runs with uids {uids}"
