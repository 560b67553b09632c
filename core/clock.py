"""The one clock of Courtyard: `now()` is the current time as an aware UTC datetime.

Core's scheduler and outbox read the time here, and plugins should too
(`core.api.now()`), instead of calling `datetime.now()`: tests then freeze
and move time for everything at once with the test kit's `frozen_time`
fixture (or `with frozen(at): ...`).

Inside a job prefer `ctx.now()`, which is this clock unless a test hands the
worker a clock of its own.
"""

from __future__ import annotations

import contextlib
from datetime import datetime, timedelta, timezone
from typing import Iterator

_frozen: datetime | None = None


def now() -> datetime:
    """The current time (aware UTC); the frozen time while a test has frozen it."""
    return _frozen if _frozen is not None else datetime.now(timezone.utc)


def _aware(at: datetime) -> datetime:
    if at.tzinfo is None:
        raise ValueError("freeze the clock with an aware datetime (e.g. datetime(..., tzinfo=timezone.utc))")
    return at.astimezone(timezone.utc)


class FrozenClock:
    """Handle on frozen time: `clock.now()`, `clock.set(at)`, `clock.tick(minutes=5)`; callable like `now`."""

    def __init__(self, at: datetime):
        self.set(at)

    def __call__(self) -> datetime:
        return self.now()

    def now(self) -> datetime:
        return _frozen  # type: ignore[return-value]

    def set(self, at: datetime) -> datetime:
        global _frozen
        _frozen = _aware(at)
        return _frozen

    def tick(self, delta: timedelta | None = None, **kwargs: float) -> datetime:
        """Move time forward by `delta` or by timedelta keyword arguments (`hours=2`)."""
        return self.set(self.now() + (delta if delta is not None else timedelta(**kwargs)))


@contextlib.contextmanager
def frozen(at: datetime | None = None) -> Iterator[FrozenClock]:
    """`with frozen(datetime(2026, 5, 1, 1, 0, tzinfo=timezone.utc)) as clock:` — time stands still inside."""
    global _frozen
    previous = _frozen
    clock = FrozenClock(at or now())
    try:
        yield clock
    finally:
        _frozen = previous
