"""Reads rows of the MySQL source with SQLAlchemy + PyMySQL, as the original emulator did."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

import sqlalchemy
from sqlalchemy.exc import OperationalError, ProgrammingError

from pipeline.settings import KEY_COLUMNS, SOURCE_TABLES, TABLES, Settings


class SourceError(SystemExit):
    """The source cannot be read; the message tells the user what to do."""


def _as_wire(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return value


class Source:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.engine = sqlalchemy.create_engine(
            settings.mysql_url,
            connect_args={"connect_timeout": settings.mysql_connect_timeout, "read_timeout": 30},
            pool_pre_ping=True,
            pool_size=4,
        )

    def row_count(self) -> int:
        """Rows per table (the emulator samples 0..N-1); checks the server and the tables first."""
        counts = {}
        try:
            with self.engine.connect() as connection:
                for table in TABLES:
                    name = SOURCE_TABLES[table]
                    counts[name] = connection.execute(sqlalchemy.text(f"SELECT COUNT(*) FROM `{name}`")).scalar_one()
        except OperationalError as error:
            code = error.orig.args[0] if error.orig and error.orig.args else None
            if code == 1044:  # access denied to the database: outside what the stack grants its user
                raise SourceError(
                    f"MySQL user {self.settings.mysql_user!r} may not use database {self.settings.mysql_database!r} "
                    f"on {self.settings.mysql_address}: the stack grants it only the database named by MYSQL_DATABASE "
                    "when the stack started and the ones starting with that name and `_` (services/mysql); use one of "
                    "those, or restart the stack (`make down && make up`) after changing MYSQL_DATABASE"
                ) from None
            if code in (1049,):  # unknown database
                raise SourceError(
                    f"database {self.settings.mysql_database!r} does not exist on {self.settings.mysql_address}: "
                    "run `make seed`"
                ) from None
            raise SourceError(
                f"Cannot reach MySQL at {self.settings.mysql_address} ({error.orig}). Is the stack up? Run `make up`."
            ) from None
        except ProgrammingError as error:
            raise SourceError(
                f"source table missing in {self.settings.mysql_database} ({error.orig.args[-1]}): run `make seed`"
            ) from None
        if len(set(counts.values())) != 1:
            raise SourceError(f"source tables have different row counts {counts}: run `make seed` again")
        count = next(iter(counts.values()))
        if count == 0:
            raise SourceError("source tables are empty: run `make seed`")
        return count

    def fetch(self, indices: Iterable[int]) -> dict[str, dict[int, dict[str, Any]]]:
        """Rows for the given indices: {table: {index: row}}, columns in table order, datetimes as text."""
        wanted = sorted(set(indices))
        result: dict[str, dict[int, dict[str, Any]]] = {}
        with self.engine.connect() as connection:
            for table in TABLES:
                key = KEY_COLUMNS[table]
                statement = sqlalchemy.text(
                    f"SELECT * FROM `{SOURCE_TABLES[table]}` WHERE `{key}` IN :keys"
                ).bindparams(sqlalchemy.bindparam("keys", expanding=True))
                rows = connection.execute(statement, {"keys": wanted}).mappings()
                result[table] = {row[key]: {c: _as_wire(v) for c, v in row.items()} for row in rows}
        return result

    def close(self) -> None:
        self.engine.dispose()
