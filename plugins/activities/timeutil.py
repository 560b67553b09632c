"""Time for the activities pages: core's clock (frozen in tests) and the estate's local time."""

from __future__ import annotations

from datetime import date, datetime, time, timezone
from zoneinfo import ZoneInfo

from core.api import local_today, now


def local(value: datetime, tz: str) -> datetime:
    return value.astimezone(ZoneInfo(tz))


def today(tz: str, at: datetime | None = None) -> date:
    return local_today(tz, at or now())


def day_start(day: date, tz: str) -> datetime:
    """Midnight of a local date, in UTC."""
    return datetime.combine(day, time.min, tzinfo=ZoneInfo(tz)).astimezone(timezone.utc)


def parse_local(text: str, tz: str) -> datetime:
    """`2025-06-01T14:30` (an HTML datetime-local value) in the estate's zone -> aware UTC.

    Raises ValueError for text that is not such a value.
    """
    value = datetime.fromisoformat(text.strip())
    if value.tzinfo is None:
        value = value.replace(tzinfo=ZoneInfo(tz))
    return value.astimezone(timezone.utc)


def input_value(value: datetime | None, tz: str) -> str:
    """The value of a datetime-local input showing `value` in the estate's zone."""
    return local(value, tz).strftime("%Y-%m-%dT%H:%M") if value else ""


def add_months(day: date, months: int) -> date:
    """The same day `months` later, clamped to the month's last day (31 Aug + 6 months = 28/29 Feb)."""
    import calendar

    index = day.month - 1 + months
    year, month = day.year + index // 12, index % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))
