"""MariaDB from Debian as the MySQL source: private datadir under the state folder, bound to the settings' host.

Least privilege: the server never runs as root (started as root, as in CI or a container, it runs as the
MYSQL_SERVER_USER account, `mysql` from the Debian package, which owns its datadir and reaches it through a traverse
right on the state folder); `secure_file_priv` confines server-side file access (LOAD_FILE, LOAD DATA INFILE, SELECT
INTO OUTFILE) to an empty folder of its own; the application user holds every right on the project's databases only
(MYSQL_DATABASE and the `MYSQL_DATABASE_*` ones the tests and the seed create), no global right such as FILE, and
no anonymous account exists. Administration (the database and the user) goes through the unix socket as root.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from pathlib import Path

import pymysql

from pipeline.private import private_dir
from pipeline.settings import Settings
from services.contract import NotReady, Service

SERVER_BINARIES = ("mariadbd", "mysqld")


def datadir(settings: Settings) -> Path:
    return settings.data_dir / "mysql"


def files_dir(settings: Settings) -> Path:
    """secure_file_priv: the only folder the server reads or writes files in on a client's behalf (kept empty)."""
    return settings.data_dir / "mysql-files"


def socket_path(settings: Settings) -> Path:
    # In the datadir, the one folder the server account may write to (next to its pid file).
    return datadir(settings) / "mysql.sock"


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


def server_account(settings: Settings) -> pwd.struct_passwd | None:
    """The account mariadbd switches to when the stack runs as root; None when it runs as an ordinary user (the
    server then runs as that user)."""
    if os.geteuid() != 0:
        return None
    name = settings.mysql_server_user
    try:
        account = pwd.getpwnam(name)
    except KeyError:
        raise SystemExit(
            f"MariaDB must not run as root, and the account MYSQL_SERVER_USER={name!r} does not exist: install "
            "mariadb-server (its package creates `mysql`), create the account, or name another in .env"
        ) from None
    if account.pw_uid == 0:
        raise SystemExit(f"MYSQL_SERVER_USER={name!r} is root; name an unprivileged account")
    return account


def _user_flag(settings: Settings) -> list[str]:
    # Only the name: the account is checked by prepare, so `status` or `down` work on a machine without it.
    return [f"--user={settings.mysql_server_user}"] if os.geteuid() == 0 else []


def _give_to(account: pwd.struct_passwd, folder: Path) -> None:
    """Make the server account own `folder` and everything in it (a datadir made by an older root-run install)."""
    for root, dirs, files in os.walk(folder):
        for path in [root, *(os.path.join(root, name) for name in dirs + files)]:
            info = os.lstat(path)
            if (info.st_uid, info.st_gid) != (account.pw_uid, account.pw_gid):
                os.lchown(path, account.pw_uid, account.pw_gid)


def prepare(settings: Settings) -> None:
    """Private folders for the server (its datadir, its empty secure_file_priv folder); when started as root, owned
    by the server account, with a traverse-only right (group, mode 0710) on the state and data folders above them."""
    account = server_account(settings)
    for folder in (settings.state_dir, settings.data_dir):
        private_dir(folder)
        if account:
            os.chown(folder, -1, account.pw_gid)
            folder.chmod(0o710)
    target = datadir(settings)
    for folder in (target, files_dir(settings)):
        private_dir(folder)
        if account:
            _give_to(account, folder)
    if (target / "mysql").is_dir():
        return
    print(f"initialising MariaDB datadir {target} ...", flush=True)
    result = subprocess.run(
        [
            _find(("mariadb-install-db", "mysql_install_db")),
            "--no-defaults",
            f"--datadir={target}",
            "--auth-root-authentication-method=socket",
            "--skip-test-db",
            *_user_flag(settings),
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


APP_USER_HOSTS = ("127.0.0.1", "localhost", "::1")


def database_patterns(settings: Settings) -> list[str]:
    """The GRANT database patterns of the application user: MYSQL_DATABASE and `MYSQL_DATABASE_<anything>` (the
    databases the tests and other user ids seed), with `_` escaped so it matches itself only."""
    exact = settings.mysql_database.replace("_", r"\_")  # the settings allow letters, digits and `_` only
    return [exact, exact + r"\_%"]


def privilege_statements(settings: Settings) -> list[tuple[str, tuple[str, ...]]]:
    """(SQL, parameters) that make the application user's rights exactly the project's databases, idempotently: an
    existing user (an older install granted ALL ON *.*) loses every other right first."""
    user, password = settings.mysql_user, settings.mysql_password
    statements: list[tuple[str, tuple[str, ...]]] = []
    for host in APP_USER_HOSTS:
        statements += [
            ("CREATE USER IF NOT EXISTS %s@%s IDENTIFIED BY %s", (user, host, password)),
            ("ALTER USER %s@%s IDENTIFIED BY %s", (user, host, password)),
            ("REVOKE ALL PRIVILEGES, GRANT OPTION FROM %s@%s", (user, host)),
        ]
        # `%%`: PyMySQL formats the statement with its parameters.
        statements += [
            (f"GRANT ALL PRIVILEGES ON `{pattern.replace('%', '%%')}`.* TO %s@%s", (user, host))
            for pattern in database_patterns(settings)
        ]
    return statements


def create_database_and_user(settings: Settings) -> None:
    """Idempotently create the source database and the application user that connects over TCP, and drop any
    anonymous account."""
    connection = pymysql.connect(unix_socket=str(socket_path(settings)), user="root", autocommit=True)
    database = settings.mysql_database
    with connection, connection.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE IF NOT EXISTS `{database}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
        cursor.execute("SELECT Host FROM mysql.user WHERE User = ''")
        for (host,) in cursor.fetchall():
            cursor.execute("DROP USER ''@%s", (host,))
        for statement, parameters in privilege_statements(settings):
            cursor.execute(statement, parameters)


def service(settings: Settings) -> Service:
    return Service(
        name="mysql",
        command=[
            _find(SERVER_BINARIES),
            "--no-defaults",
            f"--datadir={datadir(settings)}",
            f"--socket={socket_path(settings)}",
            f"--pid-file={datadir(settings) / 'mysql.pid'}",
            f"--port={settings.mysql_port}",
            f"--bind-address={settings.bind_host}",
            "--skip-name-resolve",
            f"--secure-file-priv={files_dir(settings)}",
            "--character-set-server=utf8mb4",
            "--collation-server=utf8mb4_unicode_ci",
            "--local-infile=1",
            "--innodb-buffer-pool-size=256M",
            "--innodb-flush-log-at-trx-commit=2",
            "--max-allowed-packet=64M",
            *_user_flag(settings),
        ],
        ports=(settings.mysql_port,),
        ready=ready,
        where=f"mysql://{settings.mysql_address}/{settings.mysql_database} (user {settings.mysql_user})",
        prepare=prepare,
        after_ready=create_database_and_user,
        ready_timeout=30,
        stop_timeout=30,
    )
