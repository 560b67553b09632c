"""SLA clock: deadlines measured in *working* time on a project's calendar.

A property-management ticket may promise e.g. "reply within 4 working hours".
Whether a given moment counts depends on the project's :class:`WorkingCalendar`:

* working hours per working day (local wall-clock time, default 09:00–18:00),
  minus an optional lunch break (default 12:00–13:30);
* which days are working days: by default the PRC statutory calendar from the
  ``chinese_calendar`` package (PyPI: ``chinesecalendar``), which knows both the
  public holidays (e.g. National Day 1–7 Oct) and the adjusted working weekends
  (调休, e.g. Saturday 10 Oct 2026 is a working day);
* per-project overrides (``extra_holidays`` / ``extra_workdays``).

Unknown years: ``chinese_calendar`` only ships data for the years whose official
schedule has been published (1.11.0 covers 2004–2026) and raises
``NotImplementedError`` outside that range. Rather than failing a ticket, we
fall back to plain Monday–Friday working days for such years and log one
warning per year. Keep the package up to date each winter, when the State
Council publishes the next year's schedule.

Conventions:

* Every datetime taken in must be timezone-aware (any zone); naive datetimes
  raise ``ValueError`` because their meaning would be a guess.
* Every datetime returned is aware and in UTC.
* Durations are real elapsed time; the calendar's ``tz`` only decides which
  local date a moment belongs to and where the working window lies.
* Long durations are computed day by day (at most two intervals per day), never
  minute by minute, so 500 working hours costs roughly a hundred iterations.

Pure Python: no database, no web framework.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import chinese_calendar

__all__ = ["WorkingCalendar", "calendar_from_settings", "deadline", "project_calendar"]

logger = logging.getLogger(__name__)

UTC = timezone.utc
_ZERO = timedelta(0)
_ONE_DAY = timedelta(days=1)

# Guard against a calendar that never opens (it cannot happen with valid
# settings, since extra_holidays is finite, but an infinite loop in a request
# handler is the worst possible failure mode). Ten years of consecutive closed
# days is certainly a misconfiguration.
_MAX_CLOSED_DAYS = 3660


# --------------------------------------------------------------------------- #
# Helpers
# --------------------------------------------------------------------------- #


def _require_aware(value: datetime, name: str) -> None:
    """Reject non-datetimes and naive datetimes with a message that says why."""
    if not isinstance(value, datetime):
        raise TypeError(f"{name} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
        raise ValueError(
            f"{name} is a naive datetime ({value.isoformat()}); SLA calculations need "
            "timezone-aware datetimes, e.g. datetime.now(timezone.utc)"
        )


@lru_cache(maxsize=None)
def _warn_unknown_year(year: int) -> None:
    # lru_cache makes this a warn-once-per-year: the fallback is deliberate,
    # but operators should notice that the statutory data is stale.
    logger.warning(
        "chinese_calendar has no statutory holiday data for %d; "
        "falling back to Monday-Friday working days (upgrade chinesecalendar)",
        year,
    )


@lru_cache(maxsize=8192)
def _statutory_is_workday(d: date) -> bool:
    """PRC statutory working day, or Mon–Fri if the package does not know the year."""
    # Cached: chinese_calendar re-scans its tables on every call to validate
    # the year, and SLA loops ask about the same days over and over.
    try:
        return bool(chinese_calendar.is_workday(d))
    except NotImplementedError:
        _warn_unknown_year(d.year)
        return d.weekday() < 5


# --------------------------------------------------------------------------- #
# Calendar
# --------------------------------------------------------------------------- #


@dataclass(frozen=True)
class WorkingCalendar:
    """A project's working calendar; immutable and hashable (safe to share/cache).

    ``day_start``/``day_end``/``lunch`` are local wall-clock times in ``tz``;
    the working day must not cross midnight. Precedence when deciding whether
    a date is a working day: ``extra_holidays`` > ``extra_workdays`` > statutory
    calendar (or Mon–Fri if ``use_statutory_holidays`` is False). A date in both
    extra sets is rejected as a configuration error.
    """

    tz: str = "Asia/Shanghai"
    day_start: time = time(9, 0)
    day_end: time = time(18, 0)
    lunch: tuple[time, time] | None = (time(12, 0), time(13, 30))
    use_statutory_holidays: bool = True
    extra_holidays: frozenset[date] = frozenset()
    extra_workdays: frozenset[date] = frozenset()

    def __post_init__(self) -> None:
        # Validate eagerly so a bad project setting fails when it is loaded,
        # not later inside some deadline computation.
        try:
            ZoneInfo(self.tz)
        except (ZoneInfoNotFoundError, ValueError, TypeError) as exc:
            raise ValueError(f"unknown time zone {self.tz!r}") from exc

        if not self.day_start < self.day_end:
            raise ValueError(
                f"day_start ({self.day_start}) must be before day_end ({self.day_end}); "
                "overnight working days are not supported"
            )
        if self.lunch is not None:
            lunch_start, lunch_end = self.lunch
            if not (self.day_start <= lunch_start < lunch_end <= self.day_end):
                raise ValueError(
                    f"lunch {lunch_start}-{lunch_end} must be a non-empty range "
                    f"within {self.day_start}-{self.day_end}"
                )
            if lunch_start == self.day_start and lunch_end == self.day_end:
                raise ValueError("lunch must not cover the whole working day")

        # Accept any iterable of dates (e.g. a set from a config loader) but
        # store frozensets so the dataclass stays hashable.
        for name in ("extra_holidays", "extra_workdays"):
            days = frozenset(getattr(self, name))
            for d in days:
                # datetime is a subclass of date but never compares equal to
                # one, so it would silently never match.
                if not isinstance(d, date) or isinstance(d, datetime):
                    raise TypeError(f"{name} must contain datetime.date objects, got {d!r}")
            object.__setattr__(self, name, days)

        overlap = self.extra_holidays & self.extra_workdays
        if overlap:
            listed = ", ".join(sorted(d.isoformat() for d in overlap))
            raise ValueError(f"dates in both extra_holidays and extra_workdays: {listed}")

    # -- days --------------------------------------------------------------- #

    def is_workday(self, d: date) -> bool:
        """Whether local date ``d`` (in this calendar's ``tz``) is a working day."""
        if isinstance(d, datetime):
            # A datetime's date depends on the zone it is viewed in; refusing it
            # avoids silently using the UTC date for a Shanghai calendar.
            raise TypeError("is_workday expects a date; convert the datetime to the calendar's tz first")
        if d in self.extra_holidays:
            return False
        if d in self.extra_workdays:
            return True
        if self.use_statutory_holidays:
            return _statutory_is_workday(d)
        return d.weekday() < 5

    def _zone(self) -> ZoneInfo:
        return ZoneInfo(self.tz)  # ZoneInfo caches instances per key

    def _local_date(self, moment: datetime) -> date:
        return moment.astimezone(self._zone()).date()

    def _intervals(self, d: date) -> list[tuple[datetime, datetime]]:
        """Working intervals of local date ``d`` as half-open UTC ranges, in order."""
        if not self.is_workday(d):
            return []
        if self.lunch is None:
            local = [(self.day_start, self.day_end)]
        else:
            local = [(self.day_start, self.lunch[0]), (self.lunch[1], self.day_end)]
        zone = self._zone()
        result: list[tuple[datetime, datetime]] = []
        for a, b in local:
            # Build in local wall-clock time, then convert: this keeps 09:00
            # meaning 09:00 local even in zones with DST.
            ua = datetime.combine(d, a, tzinfo=zone).astimezone(UTC)
            ub = datetime.combine(d, b, tzinfo=zone).astimezone(UTC)
            if ub > ua:  # drops empty pieces (lunch at day edge, DST oddities)
                result.append((ua, ub))
        return result

    # -- moments and durations --------------------------------------------- #

    def add_working_time(self, start: datetime, duration: timedelta) -> datetime:
        """The moment (aware UTC) when ``duration`` of working time has elapsed after ``start``.

        If ``start`` is outside working hours, counting begins at the next
        working moment; ``duration == 0`` returns that moment. A duration that
        runs out exactly at the end of a working interval returns that end
        (e.g. 18:00), not the start of the next interval.
        """
        _require_aware(start, "start")
        if not isinstance(duration, timedelta):
            raise TypeError(f"duration must be a timedelta, got {type(duration).__name__}")
        if duration < _ZERO:
            raise ValueError(f"duration must not be negative, got {duration}")

        cursor = start.astimezone(UTC)
        remaining = duration
        day = self._local_date(cursor)
        closed_run = 0
        while True:
            intervals = self._intervals(day)
            closed_run = closed_run + 1 if not intervals else 0
            if closed_run > _MAX_CLOSED_DAYS:
                raise RuntimeError(f"no working day found within {_MAX_CLOSED_DAYS} days after {start}")
            for a, b in intervals:
                if b <= cursor:
                    continue  # interval already over
                s = max(a, cursor)
                available = b - s
                # "<=" so that a zero duration yields the next working moment
                # and an exact fit ends at the interval's end.
                if remaining <= available:
                    return s + remaining
                remaining -= available
            day += _ONE_DAY

    def working_time_between(self, start: datetime, end: datetime) -> timedelta:
        """Working time in ``[start, end)``; zero if ``end <= start``."""
        _require_aware(start, "start")
        _require_aware(end, "end")
        s, e = start.astimezone(UTC), end.astimezone(UTC)
        if e <= s:
            return _ZERO
        total = _ZERO
        day, last_day = self._local_date(s), self._local_date(e)
        while day <= last_day:
            for a, b in self._intervals(day):
                lo, hi = max(a, s), min(b, e)
                if hi > lo:
                    total += hi - lo
            day += _ONE_DAY
        return total

    def next_working_moment(self, at: datetime) -> datetime:
        """``at`` itself (in UTC) if it is working time, else the start of the next working interval."""
        return self.add_working_time(at, _ZERO)


# --------------------------------------------------------------------------- #
# Convenience
# --------------------------------------------------------------------------- #


def deadline(
    start: datetime,
    *,
    hours: float,
    calendar: WorkingCalendar | None,
    working_hours_only: bool = True,
) -> datetime:
    """SLA deadline ``hours`` after ``start``, as an aware UTC datetime.

    With a calendar and ``working_hours_only`` (the default) only working time
    counts; with ``calendar=None`` or ``working_hours_only=False`` it is plain
    wall-clock time (``start + hours``), e.g. for 24/7 emergency repairs.
    """
    _require_aware(start, "start")
    if isinstance(hours, bool) or not isinstance(hours, (int, float)):
        raise TypeError(f"hours must be a number, got {type(hours).__name__}")
    if not math.isfinite(hours) or hours < 0:
        raise ValueError(f"hours must be a finite, non-negative number, got {hours!r}")
    duration = timedelta(hours=hours)
    if calendar is None or not working_hours_only:
        return start.astimezone(UTC) + duration
    return calendar.add_working_time(start, duration)


# --------------------------------------------------------------------------- #
# A project's calendar
# --------------------------------------------------------------------------- #


def _clock_time(value, default: time) -> time:
    if value in (None, ""):
        return default
    return time.fromisoformat(str(value))


def calendar_from_settings(tz: str, settings: dict | None) -> WorkingCalendar:
    """The :class:`WorkingCalendar` described by a project's ``calendar`` JSON and time zone.

    Keys (all optional): ``day_start``/``day_end`` ("09:00"/"18:00"), ``lunch``
    (["12:00", "13:30"], or null for none), ``use_statutory_holidays`` (true),
    ``extra_holidays``/``extra_workdays`` (lists of "YYYY-MM-DD"). Missing keys
    take the defaults of :class:`WorkingCalendar`; bad values raise ``ValueError``.
    """
    data = settings or {}
    base = WorkingCalendar(tz=tz or "Asia/Shanghai")
    lunch = base.lunch
    if "lunch" in data:
        lunch = None if not data["lunch"] else (_clock_time(data["lunch"][0], time(12, 0)), _clock_time(data["lunch"][1], time(13, 30)))
    return WorkingCalendar(
        tz=base.tz,
        day_start=_clock_time(data.get("day_start"), base.day_start),
        day_end=_clock_time(data.get("day_end"), base.day_end),
        lunch=lunch,
        use_statutory_holidays=bool(data.get("use_statutory_holidays", True)),
        extra_holidays=frozenset(date.fromisoformat(d) for d in data.get("extra_holidays", ())),
        extra_workdays=frozenset(date.fromisoformat(d) for d in data.get("extra_workdays", ())),
    )


def project_calendar(project) -> WorkingCalendar:
    """The working calendar of a ``core.models.Project`` (its ``calendar`` JSON in its time zone)."""
    return calendar_from_settings(project.timezone, project.calendar)
