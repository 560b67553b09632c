"""Tests for core.sla, the working-hours SLA clock.

Every statutory date used below was checked against chinese_calendar 1.11.0:

* 2026 National Day: Thu 1 Oct – Wed 7 Oct are holidays; the adjusted working
  days (调休) are Sun 20 Sep and Sat 10 Oct; Sun 11 Oct is an ordinary day off.
* 2026 Mid-Autumn: Fri 25 Sep – Sun 27 Sep are holidays.
* 2026 Spring Festival: Sun 15 Feb – Mon 23 Feb are holidays; Sat 14 Feb and
  Sat 28 Feb are adjusted working days.
* 9–16 Mar 2026 is an ordinary Mon–Fri week (Sat 14 / Sun 15 off).
* 2099 is outside the package's data (NotImplementedError) -> Mon–Fri fallback.

Asia/Shanghai is UTC+8 all year, so 09:00 local = 01:00 UTC.
Default working day: 09:00–12:00 + 13:30–18:00 = 7.5 h.
"""

from __future__ import annotations

import logging
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import chinese_calendar
import pytest

from core import sla
from core.sla import WorkingCalendar, deadline

UTC = timezone.utc
CST = ZoneInfo("Asia/Shanghai")
H = timedelta(hours=1)

CAL = WorkingCalendar()


def cst(y: int, mo: int, d: int, h: int = 0, mi: int = 0) -> datetime:
    """A Shanghai local time (aware)."""
    return datetime(y, mo, d, h, mi, tzinfo=CST)


def utc(y: int, mo: int, d: int, h: int = 0, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=UTC)


def assert_utc(value: datetime) -> None:
    assert value.tzinfo is UTC


# --------------------------------------------------------------------------- #
# Sanity: the statutory facts the tests rely on
# --------------------------------------------------------------------------- #


def test_chinese_calendar_facts_used_by_these_tests() -> None:
    # If a future chinesecalendar release revised 2026, fail here loudly
    # rather than in a confusing arithmetic test below.
    holidays = [date(2026, 10, d) for d in range(1, 8)] + [date(2026, 9, d) for d in (25, 26, 27)]
    assert all(chinese_calendar.is_holiday(d) for d in holidays)
    assert chinese_calendar.is_workday(date(2026, 9, 20))  # Sunday, 调休
    assert chinese_calendar.is_workday(date(2026, 10, 10))  # Saturday, 调休
    assert chinese_calendar.is_holiday(date(2026, 10, 11))
    assert chinese_calendar.is_holiday(date(2026, 3, 14))
    with pytest.raises(NotImplementedError):
        chinese_calendar.is_workday(date(2099, 1, 1))


# --------------------------------------------------------------------------- #
# is_workday
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize(
    ("d", "expected"),
    [
        (date(2026, 9, 30), True),  # Wed before National Day
        (date(2026, 10, 1), False),  # National Day
        (date(2026, 10, 5), False),  # Monday inside the holiday
        (date(2026, 10, 7), False),
        (date(2026, 10, 8), True),
        (date(2026, 10, 10), True),  # Saturday 调休
        (date(2026, 10, 11), False),  # Sunday
        (date(2026, 9, 20), True),  # Sunday 调休
        (date(2026, 9, 25), False),  # Mid-Autumn (a Friday)
        (date(2026, 2, 14), True),  # Saturday 调休 before Spring Festival
        (date(2026, 2, 16), False),  # Spring Festival
        (date(2026, 3, 13), True),  # ordinary Friday
        (date(2026, 3, 14), False),  # ordinary Saturday
    ],
)
def test_is_workday_statutory(d: date, expected: bool) -> None:
    assert CAL.is_workday(d) is expected


def test_is_workday_plain_mon_fri_ignores_statutory() -> None:
    cal = WorkingCalendar(use_statutory_holidays=False)
    assert cal.is_workday(date(2026, 10, 1))  # Thursday, holiday ignored
    assert not cal.is_workday(date(2026, 10, 10))  # Saturday, 调休 ignored
    assert not cal.is_workday(date(2026, 9, 20))


def test_is_workday_rejects_datetime() -> None:
    with pytest.raises(TypeError):
        CAL.is_workday(utc(2026, 3, 10, 3))  # type: ignore[arg-type]


def test_extra_holidays_and_workdays_override() -> None:
    cal = WorkingCalendar(
        extra_holidays=frozenset({date(2026, 3, 10)}),  # ordinary Tuesday closed
        extra_workdays=frozenset({date(2026, 3, 14), date(2026, 10, 1)}),  # Sat + National Day open
    )
    assert not cal.is_workday(date(2026, 3, 10))
    assert cal.is_workday(date(2026, 3, 14))
    assert cal.is_workday(date(2026, 10, 1))
    assert not cal.is_workday(date(2026, 10, 2))  # rest of the holiday still closed


def test_extra_days_accept_plain_sets_and_stay_hashable() -> None:
    cal = WorkingCalendar(extra_holidays={date(2026, 3, 10)})  # type: ignore[arg-type]
    assert isinstance(cal.extra_holidays, frozenset)
    assert hash(cal) == hash(WorkingCalendar(extra_holidays=frozenset({date(2026, 3, 10)})))


# --------------------------------------------------------------------------- #
# add_working_time / next_working_moment: concrete dates
# --------------------------------------------------------------------------- #


def test_within_one_morning() -> None:
    # Tue 10 Mar 09:30 CST + 2h -> 11:30 CST = 03:30 UTC
    result = CAL.add_working_time(cst(2026, 3, 10, 9, 30), 2 * H)
    assert result == utc(2026, 3, 10, 3, 30)
    assert_utc(result)


def test_lunch_break_is_skipped() -> None:
    # 11:30 + 1h: 30 min before lunch, 30 min after 13:30 -> 14:00 CST = 06:00 UTC
    assert CAL.add_working_time(cst(2026, 3, 10, 11, 30), H) == utc(2026, 3, 10, 6, 0)


def test_start_during_lunch_counts_from_1330() -> None:
    assert CAL.next_working_moment(cst(2026, 3, 10, 12, 15)) == utc(2026, 3, 10, 5, 30)
    assert CAL.add_working_time(cst(2026, 3, 10, 12, 15), H) == utc(2026, 3, 10, 6, 30)


def test_no_lunch_break() -> None:
    cal = WorkingCalendar(lunch=None)
    assert cal.add_working_time(cst(2026, 3, 10, 11, 30), H) == utc(2026, 3, 10, 4, 30)
    assert cal.add_working_time(cst(2026, 3, 10, 9), 9 * H) == utc(2026, 3, 10, 10, 0)


def test_start_before_working_hours() -> None:
    # 07:00 CST Tue, given in UTC as 23:00 Monday -> counting starts 09:00 CST
    start = utc(2026, 3, 9, 23, 0)
    assert CAL.next_working_moment(start) == utc(2026, 3, 10, 1, 0)
    assert CAL.add_working_time(start, 2 * H) == utc(2026, 3, 10, 3, 0)


def test_start_after_working_hours() -> None:
    # Tue 20:00 CST -> Wed 09:00 CST + 1h = Wed 10:00 CST = 02:00 UTC
    assert CAL.add_working_time(cst(2026, 3, 10, 20), H) == utc(2026, 3, 11, 2, 0)


def test_next_working_moment_boundaries() -> None:
    assert CAL.next_working_moment(cst(2026, 3, 10, 9)) == utc(2026, 3, 10, 1, 0)  # exactly open
    assert CAL.next_working_moment(cst(2026, 3, 10, 12)) == utc(2026, 3, 10, 5, 30)  # lunch starts
    assert CAL.next_working_moment(cst(2026, 3, 10, 18)) == utc(2026, 3, 11, 1, 0)  # closed
    inside = cst(2026, 3, 10, 15, 7)
    assert CAL.next_working_moment(inside) == inside
    assert_utc(CAL.next_working_moment(inside))


def test_exact_fit_ends_at_close_not_next_morning() -> None:
    # A full 7.5 h day from 09:00 ends at 18:00 the same day.
    assert CAL.add_working_time(cst(2026, 3, 10, 9), timedelta(hours=7.5)) == utc(2026, 3, 10, 10, 0)
    # ...and a 3 h morning ends at 12:00, not 13:30.
    assert CAL.add_working_time(cst(2026, 3, 10, 9), 3 * H) == utc(2026, 3, 10, 4, 0)


def test_zero_duration_is_next_working_moment() -> None:
    assert CAL.add_working_time(cst(2026, 3, 14, 10), timedelta(0)) == utc(2026, 3, 16, 1, 0)


def test_friday_afternoon_spans_normal_weekend() -> None:
    # Fri 13 Mar 16:00 + 3h: 2h Friday, then Mon 16 Mar 09:00 + 1h = 10:00 CST
    assert CAL.add_working_time(cst(2026, 3, 13, 16), 3 * H) == utc(2026, 3, 16, 2, 0)


def test_weekend_start_waits_for_monday() -> None:
    assert CAL.add_working_time(cst(2026, 3, 14, 11), H) == utc(2026, 3, 16, 2, 0)


def test_national_day_holiday_is_skipped() -> None:
    # Wed 30 Sep 17:00 + 2h: 1h on 30 Sep, then Oct 1–7 closed, Thu 8 Oct 10:00 CST
    assert CAL.add_working_time(cst(2026, 9, 30, 17), 2 * H) == utc(2026, 10, 8, 2, 0)


def test_adjusted_working_saturday_counts() -> None:
    # Fri 9 Oct 17:00 + 2h -> Sat 10 Oct (调休) 10:00 CST
    assert CAL.add_working_time(cst(2026, 10, 9, 17), 2 * H) == utc(2026, 10, 10, 2, 0)
    # ...but Sunday 11 Oct is closed: Sat 17:00 + 2h -> Mon 12 Oct 10:00 CST
    assert CAL.add_working_time(cst(2026, 10, 10, 17), 2 * H) == utc(2026, 10, 12, 2, 0)


def test_adjusted_working_sunday_counts() -> None:
    # Sat 19 Sep is off; Sun 20 Sep is a 调休 working day opening 09:00 CST.
    assert CAL.next_working_moment(cst(2026, 9, 19, 10)) == utc(2026, 9, 20, 1, 0)


def test_mid_autumn_long_weekend() -> None:
    # Thu 24 Sep 17:00 + 2h: Fri–Sun 25–27 Sep closed -> Mon 28 Sep 10:00 CST
    assert CAL.add_working_time(cst(2026, 9, 24, 17), 2 * H) == utc(2026, 9, 28, 2, 0)


def test_plain_calendar_works_through_national_day() -> None:
    cal = WorkingCalendar(use_statutory_holidays=False)
    assert cal.add_working_time(cst(2026, 9, 30, 17), 2 * H) == utc(2026, 10, 1, 2, 0)


def test_extra_holiday_and_extra_workday_in_arithmetic() -> None:
    closed_tue = WorkingCalendar(extra_holidays=frozenset({date(2026, 3, 10)}))
    # Mon 17:00 + 2h skips the closed Tuesday -> Wed 10:00 CST
    assert closed_tue.add_working_time(cst(2026, 3, 9, 17), 2 * H) == utc(2026, 3, 11, 2, 0)

    open_sat = WorkingCalendar(extra_workdays=frozenset({date(2026, 3, 14)}))
    # Fri 17:00 + 2h -> Sat 14 Mar 10:00 CST
    assert open_sat.add_working_time(cst(2026, 3, 13, 17), 2 * H) == utc(2026, 3, 14, 2, 0)


def test_custom_hours() -> None:
    cal = WorkingCalendar(day_start=time(8, 0), day_end=time(20, 0), lunch=(time(12, 0), time(13, 0)))
    # 11 working hours/day. Tue 19:00 + 2h: 1h Tue, Wed 08:00 + 1h = 09:00 CST
    assert cal.add_working_time(cst(2026, 3, 10, 19), 2 * H) == utc(2026, 3, 11, 1, 0)


def test_input_in_other_timezone_returns_utc() -> None:
    # 10:30 in Tokyo (UTC+9) = 09:30 Shanghai
    start = datetime(2026, 3, 10, 10, 30, tzinfo=ZoneInfo("Asia/Tokyo"))
    result = CAL.add_working_time(start, H)
    assert result == utc(2026, 3, 10, 2, 30)
    assert_utc(result)


def test_calendar_in_dst_zone_follows_local_wall_clock() -> None:
    # Berlin switches to CEST (UTC+2) on Sun 29 Mar 2026: Fri opens 08:00 UTC,
    # the following Monday opens 07:00 UTC.
    cal = WorkingCalendar(tz="Europe/Berlin", use_statutory_holidays=False, lunch=None)
    assert cal.next_working_moment(utc(2026, 3, 27, 0)) == utc(2026, 3, 27, 8, 0)
    assert cal.add_working_time(utc(2026, 3, 27, 16), 2 * H) == utc(2026, 3, 30, 8, 0)


def test_long_duration_spans_spring_festival() -> None:
    # 75 working hours = 10 full working days starting Thu 12 Feb 2026 09:00:
    # 12, 13, 14 (Sat 调休), then 15–23 closed, 24, 25, 26, 27, 28 (Sat 调休),
    # Mon 2, Tue 3 Mar -> ends Tue 3 Mar 18:00 CST = 10:00 UTC.
    assert CAL.add_working_time(cst(2026, 2, 12, 9), 75 * H) == utc(2026, 3, 3, 10, 0)


def test_500_working_hours() -> None:
    start = cst(2026, 3, 9, 9)
    result = CAL.add_working_time(start, 500 * H)
    # 500 h = 66 full days (495 h) + 5 h -> 15:30 on the 67th working day.
    # Counting from Mon 9 Mar: 17 in March, 21 in April (Qingming 4–6 Apr off),
    # 19 in May (1–5 May off, Sat 9 May 调休), then 1–12 Jun -> Fri 12 Jun.
    # Also cross-checked minute by minute in test_matches_brute_force_reference.
    expected_day = _nth_workday(date(2026, 3, 9), 67)
    assert expected_day == date(2026, 6, 12)
    assert len(chinese_calendar.get_workdays(date(2026, 3, 9), expected_day)) == 67
    assert result == utc(2026, 6, 12, 7, 30)  # Fri 12 Jun 15:30 CST
    assert CAL.working_time_between(start, result) == 500 * H


def test_long_duration_does_not_step_minute_by_minute(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = 0
    original = WorkingCalendar._intervals

    def counting(self: WorkingCalendar, d: date) -> list[tuple[datetime, datetime]]:
        nonlocal calls
        calls += 1
        return original(self, d)

    monkeypatch.setattr(WorkingCalendar, "_intervals", counting)
    CAL.add_working_time(cst(2026, 3, 9, 9), 500 * H)
    # ~98 calendar days, one call per day.
    assert calls < 120


# --------------------------------------------------------------------------- #
# working_time_between
# --------------------------------------------------------------------------- #


def test_working_time_between_concrete() -> None:
    # One ordinary working day.
    assert CAL.working_time_between(cst(2026, 3, 10, 0), cst(2026, 3, 11, 0)) == timedelta(hours=7.5)
    # Lunch excluded: 11:00–14:00 = 1h + 0.5h.
    assert CAL.working_time_between(cst(2026, 3, 10, 11), cst(2026, 3, 10, 14)) == timedelta(hours=1.5)
    # Fri 16:00 -> Mon 10:00 = 2h + 1h.
    assert CAL.working_time_between(cst(2026, 3, 13, 16), cst(2026, 3, 16, 10)) == 3 * H
    # National Day fortnight Mon 28 Sep – Sun 11 Oct: 28, 29, 30 Sep, 8, 9, 10 Oct.
    assert CAL.working_time_between(cst(2026, 9, 28), cst(2026, 10, 12)) == 6 * timedelta(hours=7.5)
    # Entirely inside the holiday.
    assert CAL.working_time_between(cst(2026, 10, 1, 9), cst(2026, 10, 7, 18)) == timedelta(0)


def test_working_time_between_reversed_or_equal_is_zero() -> None:
    t = cst(2026, 3, 10, 10)
    assert CAL.working_time_between(t, t) == timedelta(0)
    assert CAL.working_time_between(t + H, t) == timedelta(0)


def test_working_time_between_mixed_timezones() -> None:
    start = utc(2026, 3, 10, 1, 0)  # 09:00 CST
    end = datetime(2026, 3, 10, 11, 0, tzinfo=ZoneInfo("Asia/Tokyo"))  # 10:00 CST
    assert CAL.working_time_between(start, end) == H


@pytest.mark.parametrize(
    ("start", "duration"),
    [
        (cst(2026, 3, 10, 9, 30), 2 * H),
        (cst(2026, 3, 10, 11, 45), timedelta(minutes=50)),
        (cst(2026, 3, 10, 12, 15), 4 * H),  # starts in lunch
        (cst(2026, 3, 10, 23, 0), 8 * H),  # starts at night
        (cst(2026, 3, 13, 16, 0), timedelta(hours=13, minutes=17, seconds=3)),
        (cst(2026, 9, 30, 17, 0), 2 * H),  # National Day
        (cst(2026, 9, 19, 8, 0), 30 * H),  # 调休 Sunday, Mid-Autumn
        (cst(2026, 10, 9, 17, 59), 9 * H),  # 调休 Saturday
        (cst(2026, 2, 12, 10, 0), 100 * H),  # Spring Festival
        (utc(2026, 12, 31, 9, 0), 20 * H),  # crosses into an unknown year
        (cst(2026, 3, 10, 10), timedelta(0)),
    ],
)
def test_working_time_between_inverts_add_working_time(start: datetime, duration: timedelta) -> None:
    end = CAL.add_working_time(start, duration)
    assert CAL.working_time_between(start, end) == duration


@pytest.mark.parametrize(
    ("start", "end"),
    [
        (cst(2026, 3, 10, 9), cst(2026, 3, 10, 20)),  # end after close
        (cst(2026, 3, 13, 10), cst(2026, 3, 15, 12)),  # end on a Sunday
        (cst(2026, 9, 30, 8), cst(2026, 10, 5, 12, 30)),  # end inside National Day
        (cst(2026, 3, 10, 11), cst(2026, 3, 10, 12, 45)),  # end in lunch
    ],
)
def test_add_working_time_of_between_is_earliest_equivalent_moment(start: datetime, end: datetime) -> None:
    # Reverse direction: when `end` is outside working hours the result is the
    # earliest moment with the same working time, i.e. no working time is left
    # between it and `end`.
    worked = CAL.working_time_between(start, end)
    back = CAL.add_working_time(start, worked)
    assert back <= end
    assert CAL.working_time_between(back, end) == timedelta(0)


def _nth_workday(first: date, n: int) -> date:
    """The n-th (1-based) working day on CAL counting from `first`."""
    d, seen = first, 0
    while True:
        if CAL.is_workday(d):
            seen += 1
            if seen == n:
                return d
        d += timedelta(days=1)


def _brute_force_add(cal: WorkingCalendar, start: datetime, minutes: int) -> datetime:
    """Minute-by-minute reference implementation (start must be on a whole minute)."""
    zone = ZoneInfo(cal.tz)

    def is_working_minute(t: datetime) -> bool:
        local = t.astimezone(zone)
        if not cal.is_workday(local.date()):
            return False
        lt = local.time()
        if not cal.day_start <= lt < cal.day_end:
            return False
        return cal.lunch is None or not cal.lunch[0] <= lt < cal.lunch[1]

    t = start.astimezone(UTC)
    while not is_working_minute(t):
        t += timedelta(minutes=1)
    while minutes:
        if is_working_minute(t):
            minutes -= 1
        t += timedelta(minutes=1)
    return t


@pytest.mark.parametrize(
    ("start", "minutes"),
    [
        (cst(2026, 3, 10, 7, 13), 600),
        (cst(2026, 9, 18, 17, 1), 3000),  # 调休 Sunday, Mid-Autumn, National Day
        (cst(2026, 10, 9, 11, 59), 451),
        (cst(2026, 2, 13, 12, 30), 2000),  # Spring Festival
        (cst(2026, 3, 9, 9), 500 * 60),
    ],
)
def test_matches_brute_force_reference(start: datetime, minutes: int) -> None:
    result = CAL.add_working_time(start, timedelta(minutes=minutes))
    reference = _brute_force_add(CAL, start, minutes)
    # The reference stops at the end of the last counted minute, so an SLA
    # that ends exactly at 12:00 / 18:00 yields the close time in both.
    assert result == reference


# --------------------------------------------------------------------------- #
# Unknown years
# --------------------------------------------------------------------------- #


def test_unknown_year_falls_back_to_mon_fri(caplog: pytest.LogCaptureFixture) -> None:
    sla._statutory_is_workday.cache_clear()
    sla._warn_unknown_year.cache_clear()
    with caplog.at_level(logging.WARNING, logger="core.sla"):
        assert CAL.is_workday(date(2099, 1, 1))  # Thursday; New Year not known -> workday
        assert CAL.is_workday(date(2099, 1, 2))  # Friday
        assert not CAL.is_workday(date(2099, 1, 3))  # Saturday
    assert "2099" in caplog.text
    # Warn once per year, not per lookup.
    assert sum("2099" in r.getMessage() for r in caplog.records) == 1
    # Fri 2 Jan 2099 17:00 + 2h -> Mon 5 Jan 10:00 CST
    assert CAL.add_working_time(cst(2099, 1, 2, 17), 2 * H) == utc(2099, 1, 5, 2, 0)


def test_unknown_year_overrides_still_apply() -> None:
    cal = WorkingCalendar(extra_holidays=frozenset({date(2099, 1, 1)}))
    assert not cal.is_workday(date(2099, 1, 1))


# --------------------------------------------------------------------------- #
# deadline()
# --------------------------------------------------------------------------- #


def test_deadline_working_hours() -> None:
    start = cst(2026, 9, 30, 17)
    result = deadline(start, hours=2, calendar=CAL)
    assert result == utc(2026, 10, 8, 2, 0)
    assert result == CAL.add_working_time(start, 2 * H)
    assert_utc(result)


def test_deadline_fractional_hours() -> None:
    assert deadline(cst(2026, 3, 10, 11, 30), hours=0.75, calendar=CAL) == utc(2026, 3, 10, 5, 45)


@pytest.mark.parametrize(("calendar", "working_only"), [(None, True), (CAL, False), (None, False)])
def test_deadline_wall_clock(calendar: WorkingCalendar | None, working_only: bool) -> None:
    # 30 Sep 17:00 CST + 24h straight through the holiday.
    result = deadline(cst(2026, 9, 30, 17), hours=24, calendar=calendar, working_hours_only=working_only)
    assert result == utc(2026, 10, 1, 9, 0)
    assert_utc(result)


@pytest.mark.parametrize("hours", [-1, float("nan"), float("inf")])
def test_deadline_rejects_bad_hours(hours: float) -> None:
    with pytest.raises(ValueError):
        deadline(utc(2026, 3, 10), hours=hours, calendar=CAL)


# --------------------------------------------------------------------------- #
# Input validation
# --------------------------------------------------------------------------- #

NAIVE = datetime(2026, 3, 10, 10, 0)


@pytest.mark.parametrize(
    "call",
    [
        lambda: CAL.add_working_time(NAIVE, H),
        lambda: CAL.next_working_moment(NAIVE),
        lambda: CAL.working_time_between(NAIVE, utc(2026, 3, 11)),
        lambda: CAL.working_time_between(utc(2026, 3, 9), NAIVE),
        lambda: deadline(NAIVE, hours=1, calendar=CAL),
        lambda: deadline(NAIVE, hours=1, calendar=None),
    ],
)
def test_naive_datetimes_rejected(call) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="naive"):
        call()


def test_negative_duration_rejected() -> None:
    with pytest.raises(ValueError):
        CAL.add_working_time(utc(2026, 3, 10), -H)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"tz": "Mars/Olympus_Mons"},
        {"day_start": time(18), "day_end": time(9)},
        {"day_start": time(9), "day_end": time(9)},
        {"lunch": (time(13), time(12))},
        {"lunch": (time(8), time(9, 30))},  # starts before opening
        {"lunch": (time(9), time(18))},  # whole day
        {"extra_holidays": frozenset({date(2026, 3, 10)}), "extra_workdays": frozenset({date(2026, 3, 10)})},
    ],
)
def test_invalid_calendar_rejected(kwargs: dict) -> None:  # type: ignore[type-arg]
    with pytest.raises(ValueError):
        WorkingCalendar(**kwargs)


def test_extra_days_must_be_dates_not_datetimes() -> None:
    with pytest.raises(TypeError):
        WorkingCalendar(extra_holidays=frozenset({datetime(2026, 3, 10)}))  # type: ignore[arg-type]
