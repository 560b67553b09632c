"""Count the SQL statements of a request (benchmark and tests only, never in production).

Tortoise logs every statement it sends at DEBUG level on the logger
`tortoise.db_client`; `counting()` collects those log records for the block
(and the tasks started in it, which inherit the context):

    with counting() as queries:
        await client.get("/p/E001/hotline/")
    print(len(queries), repeated(queries))

Transaction control (BEGIN, COMMIT, savepoints) is not counted.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections import Counter
from contextvars import ContextVar
from typing import Iterator

_bucket: ContextVar[list[str] | None] = ContextVar("bench_queries", default=None)
_installed = False


class _Collector(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        bucket = _bucket.get()
        if bucket is not None:
            bucket.append(str(record.args[0] if record.args else record.msg))


def install() -> None:
    """Turn on Tortoise's statement log for the counter only (nothing is printed)."""
    global _installed
    if _installed:
        return
    logger = logging.getLogger("tortoise.db_client")
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    logger.addHandler(_Collector())
    _installed = True


@contextlib.contextmanager
def counting() -> Iterator[list[str]]:
    install()
    queries: list[str] = []
    token = _bucket.set(queries)
    try:
        yield queries
    finally:
        _bucket.reset(token)


_PARAMS = re.compile(r"\$\d+|\?")
_LISTS = re.compile(r"\((?:\s*\?\s*,)+\s*\?\s*\)")
_NUMBERS = re.compile(r"\b\d+\b")
_STRINGS = re.compile(r"'(?:[^']|'')*'")


def shape(sql: str) -> str:
    """The statement without its values: N+1 loops repeat one shape once per row."""
    text = _STRINGS.sub("'?'", sql)
    text = _PARAMS.sub("?", text)
    text = _NUMBERS.sub("0", text)
    return _LISTS.sub("(?)", text)


def repeated(queries: list[str]) -> tuple[int, str]:
    """How often the most repeated statement shape ran, and that shape."""
    if not queries:
        return 0, ""
    [(most, times)] = Counter(shape(q) for q in queries).most_common(1)
    return times, most
