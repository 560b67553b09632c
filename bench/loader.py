"""Bulk loading into the ORM's own tables: PostgreSQL COPY, SQLite executemany.

A `Sink` takes rows for a model as tuples of Python values in the order of the
columns the generator names (ORM field names, e.g. "project_id"); every other
column of the table gets the model's default (callable defaults, `auto_now`
stamps, NULL for nullable fields). A column that is required and has no
default raises at once, so a model change that the generator does not know
about fails loudly instead of loading wrong data.

On PostgreSQL the rows go through `COPY ... FROM STDIN` in text format
(asyncpg's binary encoder is about half as fast for NUMERIC columns). Before a
large load, `PostgresSink.drop_constraints()` takes the primary keys, unique
constraints, indexes and foreign keys off the tables about to be filled and
`restore_constraints()` puts them back afterwards, as pg_restore does: the
database checks every constraint then, in one pass per constraint, which is
many times faster than checking row by row during the load.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import Any, Callable, Iterable, Sequence

from tortoise import fields as orm_fields
from tortoise.models import Model


def _escape(text: str) -> str:
    if "\\" in text or "\t" in text or "\n" in text or "\r" in text:
        text = text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    return text


def _pg_text(value: Any) -> str:
    """Any value in PostgreSQL's COPY text format (the slow path; columns pick a fast one)."""
    if value is None:
        return "\\N"
    if value is True:
        return "t"
    if value is False:
        return "f"
    if isinstance(value, (dict, list)):
        return _escape(json.dumps(value, ensure_ascii=False, separators=(",", ":")))
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, str):
        return _escape(value)
    return str(value)


def _text_or_null(value: Any) -> str:
    return "\\N" if value is None else _escape(value)


def _str_or_null(value: Any) -> str:
    return "\\N" if value is None else str(value)


def _iso_or_null(value: Any) -> str:
    # Dates may come pre-formatted ("2026-01-01"): the same text on both databases.
    if value is None:
        return "\\N"
    return value if value.__class__ is str else value.isoformat()


def _pg_formatter(field: orm_fields.Field) -> Callable[[Any], str]:
    if isinstance(field, (orm_fields.CharField, orm_fields.TextField)):
        return _text_or_null
    if isinstance(field, (orm_fields.IntField, orm_fields.BigIntField, orm_fields.SmallIntField, orm_fields.DecimalField)):
        return _str_or_null
    if isinstance(field, (orm_fields.DatetimeField, orm_fields.DateField)):
        return _iso_or_null
    return _pg_text


def _sqlite_value(value: Any) -> Any:
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).isoformat(" ")
    return value


def asyncpg_dsn(url: str) -> str:
    """A Courtyard database URL (postgres://...) as asyncpg takes it."""
    return "postgresql://" + url.split("://", 1)[1]


@dataclass
class Layout:
    """Where a model's rows go: its table, every column, and how to fill the ones not given."""

    model: type[Model]
    table: str
    given: list[str]
    columns: list[str]
    fields: list[orm_fields.Field]
    fill: list[Any]  # values of the columns after `given`, the same for every row

    @classmethod
    def of(cls, model: type[Model], given: Sequence[str], now: datetime) -> "Layout":
        meta = model._meta
        projection = meta.fields_db_projection
        unknown = [name for name in given if name not in projection]
        if unknown:
            raise ValueError(f"{model.__name__}: no columns {unknown}")
        # A generated primary key left out is numbered by the database.
        rest = [name for name in projection if name not in given
                and not (meta.fields_map[name].pk and getattr(meta.fields_map[name], "generated", False))]
        fill = []
        for name in rest:
            field = meta.fields_map[name]
            if getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
                fill.append(now)
            elif field.default is not None:
                fill.append(field.default() if callable(field.default) else field.default)
            elif field.null:
                fill.append(None)
            else:
                raise ValueError(f"{model.__name__}.{name} is required and has no default: the generator must set it")
        names = list(given) + rest
        return cls(
            model, meta.db_table, list(given), [projection[n] for n in names], [meta.fields_map[n] for n in names], fill
        )


class Sink:
    """Where generated rows go. `add(model, columns, rows)` may be called many times per model."""

    def __init__(self, now: datetime):
        self.now = now
        self.counts: dict[str, int] = {}
        self.seconds = 0.0
        self._layouts: dict[tuple[type[Model], tuple[str, ...]], Layout] = {}

    def layout(self, model: type[Model], columns: Sequence[str]) -> Layout:
        key = (model, tuple(columns))
        if key not in self._layouts:
            self._layouts[key] = Layout.of(model, columns, self.now)
        return self._layouts[key]

    async def add(self, model: type[Model], columns: Sequence[str], rows: Sequence[tuple]) -> int:
        layout = self.layout(model, columns)
        if rows and len(rows[0]) != len(columns):
            raise ValueError(f"{layout.table}: {len(columns)} columns named but rows have {len(rows[0])} values")
        started = time.perf_counter()
        count = await self._write(layout, rows)
        self.seconds += time.perf_counter() - started
        self.counts[layout.table] = self.counts.get(layout.table, 0) + count
        return count

    async def _write(self, layout: Layout, rows: Iterable[tuple]) -> int:
        raise NotImplementedError

    async def close(self) -> None:
        pass


class PostgresSink(Sink):
    """COPY in text format over one asyncpg connection of its own."""

    BATCH_ROWS = 20_000

    def __init__(self, conn, now: datetime):
        super().__init__(now)
        self.conn = conn
        self._formatters: dict[int, list[Callable[[Any], str]]] = {}
        self._dropped: list[tuple[str, str, str, str]] = []  # (table, kind, name, definition)
        self._dropped_indexes: list[tuple[str, str]] = []

    @classmethod
    async def connect(cls, dsn: str, now: datetime) -> "PostgresSink":
        import asyncpg

        conn = await asyncpg.connect(dsn)
        # A benchmark database: nothing is lost if the machine dies mid-load, it is generated again.
        await conn.execute("SET synchronous_commit = off")
        await conn.execute("SET maintenance_work_mem = '512MB'")
        return cls(conn, now)

    async def _write(self, layout: Layout, rows: Iterable[tuple]) -> int:
        formatters = [_pg_formatter(field) for field in layout.fields]
        given = len(layout.given)
        head = formatters[:given]
        tail = "".join("\t" + f(v) for f, v in zip(formatters[given:], layout.fill))
        count = 0

        async def chunks():
            nonlocal count
            lines: list[str] = []
            for row in rows:
                lines.append("\t".join([f(v) for f, v in zip(head, row)]) + tail)
                if len(lines) >= self.BATCH_ROWS:
                    count += len(lines)
                    yield ("\n".join(lines) + "\n").encode()
                    lines = []
            if lines:
                count += len(lines)
                yield ("\n".join(lines) + "\n").encode()

        await self.conn.copy_to_table(layout.table, source=chunks(), columns=layout.columns, format="text")
        return count

    async def drop_constraints(self, tables: Sequence[str]) -> None:
        """Take keys and indexes off `tables`, and every foreign key off the schema, for a fast load in any order."""
        tables = list(tables)
        constraints = await self.conn.fetch(
            """
            SELECT c.conrelid::regclass::text AS tbl, c.contype::text AS kind, c.conname AS name,
                   pg_get_constraintdef(c.oid) AS definition
            FROM pg_constraint c
            WHERE c.connamespace = 'public'::regnamespace
              AND (c.contype = 'f' OR (c.contype IN ('p', 'u') AND c.conrelid::regclass::text = ANY($1::text[])))
            """,
            tables,
        )
        indexes = await self.conn.fetch(
            """
            SELECT i.tablename AS tbl, i.indexname AS name, i.indexdef AS definition
            FROM pg_indexes i
            WHERE i.schemaname = 'public' AND i.tablename = ANY($1::text[])
              AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname
                              AND c.connamespace = 'public'::regnamespace)
            """,
            tables,
        )
        order = {"f": 0, "u": 1, "p": 2}
        for row in sorted(constraints, key=lambda r: order[r["kind"]]):
            await self.conn.execute(f'ALTER TABLE "{row["tbl"]}" DROP CONSTRAINT "{row["name"]}"')
            self._dropped.append((row["tbl"], row["kind"], row["name"], row["definition"]))
        for row in indexes:
            await self.conn.execute(f'DROP INDEX "{row["name"]}"')
            self._dropped_indexes.append((row["tbl"], row["definition"]))

    async def restore_constraints(self, dsn: str, report: Callable[[str], None] = print) -> None:
        """Put back what `drop_constraints` took off: keys and indexes on two connections, then foreign keys."""
        keys = [d for d in self._dropped if d[1] in ("p", "u")]
        foreign = [d for d in self._dropped if d[1] == "f"]
        statements = [f'ALTER TABLE "{t}" ADD CONSTRAINT "{n}" {d}' for t, _k, n, d in keys]
        # Keys first per table (a foreign key needs the referenced key), indexes after.
        first = [s for s in statements if " PRIMARY KEY" in s]
        second = [s for s in statements if s not in first] + [definition for _t, definition in self._dropped_indexes]
        for batch in (first, second):
            await _run_parallel(dsn, batch, workers=2, report=report)
        for table, _kind, name, definition in foreign:
            started = time.perf_counter()
            await self.conn.execute(f'ALTER TABLE "{table}" ADD CONSTRAINT "{name}" {definition}')
            if time.perf_counter() - started > 5:
                report(f"  checked {table}.{name} in {time.perf_counter() - started:.0f}s")
        self._dropped.clear()
        self._dropped_indexes.clear()

    async def reset_sequences(self, tables: Iterable[str]) -> None:
        """After loading explicit ids: the next row the app inserts gets the next free id."""
        for table in tables:
            seq = await self.conn.fetchval("SELECT pg_get_serial_sequence($1, 'id')", table)
            if seq:
                await self.conn.execute(
                    f"SELECT setval('{seq}', COALESCE((SELECT max(id) FROM \"{table}\"), 0) + 1, false)"
                )

    async def analyze(self) -> None:
        # VACUUM too: a freshly loaded table has no visibility map, so counts could not be answered
        # from indexes alone until autovacuum came by, which a running installation has long had.
        await self.conn.execute("VACUUM (ANALYZE)")

    async def close(self) -> None:
        await self.conn.close()


async def _run_parallel(dsn: str, statements: list[str], *, workers: int, report: Callable[[str], None]) -> None:
    import asyncpg

    queue = list(statements)

    async def worker():
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute("SET maintenance_work_mem = '512MB'")
            while queue:
                statement = queue.pop(0)
                started = time.perf_counter()
                await conn.execute(statement)
                if time.perf_counter() - started > 5:
                    report(f"  {statement[:90]}… {time.perf_counter() - started:.0f}s")
        finally:
            await conn.close()

    await asyncio.gather(*(worker() for _ in range(workers)))


class SqliteSink(Sink):
    """executemany on a connection of the standard library's sqlite3, in one transaction per batch."""

    BATCH_ROWS = 20_000

    def __init__(self, path: str, now: datetime):
        super().__init__(now)
        self.db = sqlite3.connect(path)
        self.db.execute("PRAGMA synchronous = OFF")
        self.db.execute("PRAGMA foreign_keys = ON")

    async def _write(self, layout: Layout, rows: Iterable[tuple]) -> int:
        fill = tuple(_sqlite_value(v) for v in layout.fill)
        placeholders = ", ".join("?" for _ in layout.columns)
        columns = ", ".join(f'"{c}"' for c in layout.columns)
        sql = f'INSERT INTO "{layout.table}" ({columns}) VALUES ({placeholders})'
        count = 0
        batch: list[tuple] = []
        for row in rows:
            batch.append(tuple(_sqlite_value(v) for v in row) + fill)
            if len(batch) >= self.BATCH_ROWS:
                count += self._flush(sql, batch)
                batch = []
                await asyncio.sleep(0)
        if batch:
            count += self._flush(sql, batch)
        return count

    def _flush(self, sql: str, batch: list[tuple]) -> int:
        with self.db:
            self.db.executemany(sql, batch)
        return len(batch)

    async def analyze(self) -> None:
        self.db.execute("ANALYZE")
        self.db.commit()

    async def close(self) -> None:
        self.db.close()
