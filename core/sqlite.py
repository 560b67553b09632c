"""SQLite through Tortoise, made safe for more than one connection to the same file.

Tortoise uses one connection per SQLite database and begins transactions
DEFERRED. With a second connection to the file (a long import on its own
connection, `core.db.own_connection`; the `run.py worker` process) that is
not enough: a deferred transaction that has read and then wants to write
while the other connection writes gets "database is locked" at once, without
waiting. So here transactions begin IMMEDIATE (they wait for the writer,
then see its data), and every connection waits up to `BUSY_TIMEOUT_MS` for a
writer instead of SQLite's 5 seconds (an import of a few thousand rows takes
longer). With one connection nothing changes: Tortoise already runs one
transaction at a time.

The module name contains "sqlite" on purpose: Tortoise's migrations pick
their SQL dialect by the client class's module name.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from tortoise.backends.base.config_generator import expand_db_url
from tortoise.backends.sqlite.client import (
    SqliteClient,
    SqliteClientWithRegexpSupport,
    SqliteTransactionContext,
    SqliteTransactionWrapper,
)
from tortoise.exceptions import TransactionManagementError

BUSY_TIMEOUT_MS = 300_000  # `?busy_timeout=` (milliseconds) in the URL overrides it


class ImmediateTransaction(SqliteTransactionWrapper):
    async def begin(self) -> None:
        try:
            await self._connection.commit()
            await self._connection.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise TransactionManagementError(exc) from exc


class Client(SqliteClient):
    def _in_transaction(self) -> SqliteTransactionContext:
        return SqliteTransactionContext(ImmediateTransaction(self), self._lock)


class ClientWithRegexp(SqliteClientWithRegexpSupport):
    def _in_transaction(self) -> SqliteTransactionContext:
        return SqliteTransactionContext(ImmediateTransaction(self), self._lock)


def get_client_class(db_info: dict) -> type[SqliteClient]:
    """Tortoise asks the engine module (this one) for its client class."""
    if db_info.get("credentials", {}).get("install_regexp_functions"):
        return ClientWithRegexp
    return Client


def connection_config(url: str) -> str | dict[str, Any]:
    """Tortoise's settings for the connection to `url`: SQLite URLs through this module, others as they are."""
    if not url.startswith("sqlite://"):
        return url
    config = expand_db_url(url)
    config["engine"] = __name__
    config["credentials"].setdefault("busy_timeout", BUSY_TIMEOUT_MS)
    return config
