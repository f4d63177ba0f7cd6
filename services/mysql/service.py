"""MariaDB from Debian as the MySQL source: private datadir under the state folder, bound to the settings' host."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pymysql

from pipeline.settings import Settings
from services.contract import NotReady, Service

SERVER_BINARIES = ("mariadbd", "mysqld")


def datadir(settings: Settings) -> Path:
    return settings.data_dir / "mysql"


def socket_path(settings: Settings) -> Path:
    return settings.run_dir / "mysql.sock"


def _find(binary_names: tuple[str, ...]) -> str:
    for name in binary_names:
        for folder in (None, "/usr/sbin", "/usr/local/sbin"):
            found = shutil.which(name, path=folder)
            if found:
                return found
    raise SystemExit(
        f"MariaDB server not found (looked for {', '.join(binary_names)}). Install it with "
        "`sudo apt-get install -y --no-install-recommends mariadb-server` or run `make setup` as root."
    )


def _user_flag() -> list[str]:
    # mariadbd refuses to run as root unless told to; as another user the flag is unneeded.
    return ["--user=root"] if os.geteuid() == 0 else []


def prepare(settings: Settings) -> None:
    target = datadir(settings)
    if (target / "mysql").is_dir():
        return
    target.mkdir(parents=True, exist_ok=True)
    print(f"initialising MariaDB datadir {target} ...", flush=True)
    result = subprocess.run(
        [
            _find(("mariadb-install-db", "mysql_install_db")),
            "--no-defaults",
            f"--datadir={target}",
            "--auth-root-authentication-method=socket",
            "--skip-test-db",
            *_user_flag(),
        ],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        shutil.rmtree(target, ignore_errors=True)
        raise SystemExit(f"mariadb-install-db failed:\n{result.stdout}\n{result.stderr}")


def ready(settings: Settings) -> None:
    try:
        connection = pymysql.connect(unix_socket=str(socket_path(settings)), user="root", connect_timeout=2)
    except pymysql.MySQLError as error:
        raise NotReady(f"SELECT 1 over {socket_path(settings)} failed: {error}") from error
    with connection, connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def create_database_and_user(settings: Settings) -> None:
    """Idempotently create the source database and the application user that connects over TCP."""
    connection = pymysql.connect(unix_socket=str(socket_path(settings)), user="root", autocommit=True)
    user, password, database = settings.mysql_user, settings.mysql_password, settings.mysql_database
    with connection, connection.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE IF NOT EXISTS `{database}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
        for host in ("127.0.0.1", "localhost", "::1"):
            cursor.execute("CREATE USER IF NOT EXISTS %s@%s IDENTIFIED BY %s", (user, host, password))
            cursor.execute("ALTER USER %s@%s IDENTIFIED BY %s", (user, host, password))
            # The whole private instance belongs to the pipeline (tests use their own databases on it).
            cursor.execute("GRANT ALL PRIVILEGES ON *.* TO %s@%s", (user, host))


def service(settings: Settings) -> Service:
    return Service(
        name="mysql",
        command=[
            _find(SERVER_BINARIES),
            "--no-defaults",
            f"--datadir={datadir(settings)}",
            f"--socket={socket_path(settings)}",
            f"--pid-file={settings.run_dir / 'mysql.pid'}",
            f"--port={settings.mysql_port}",
            f"--bind-address={settings.bind_host}",
            "--skip-name-resolve",
            "--character-set-server=utf8mb4",
            "--collation-server=utf8mb4_unicode_ci",
            "--local-infile=1",
            "--innodb-buffer-pool-size=256M",
            "--innodb-flush-log-at-trx-commit=2",
            "--max-allowed-packet=64M",
            *_user_flag(),
        ],
        ports=(settings.mysql_port,),
        ready=ready,
        where=f"mysql://{settings.mysql_address}/{settings.mysql_database} (user {settings.mysql_user})",
        prepare=prepare,
        after_ready=create_database_and_user,
        ready_timeout=30,
        stop_timeout=30,
    )
