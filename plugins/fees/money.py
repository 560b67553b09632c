"""Amounts, periods and input errors shared by the fee services."""

from __future__ import annotations

import calendar
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from core.api import gettext as _, now

FEN = Decimal("0.01")
ZERO = Decimal("0.00")


class InputError(ValueError):
    """Bad input for one form field; `errors` maps field names to messages shown next to them."""

    def __init__(self, errors: dict[str, str]):
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


def utcnow() -> datetime:
    return now()


def round_fen(value: Decimal) -> Decimal:
    """Half-up to the fen (0.005 -> 0.01), the rule for every bill line."""
    return value.quantize(FEN, rounding=ROUND_HALF_UP)


def parse_amount(text, field: str = "amount", *, allow_zero: bool = False, places: int = 2, maximum: Decimal | None = None) -> Decimal:
    """A positive amount typed by a user ("1,280.50" is fine); at most `places` decimals."""
    raw = str(text if text is not None else "").strip().replace(",", "").replace("¥", "").replace("￥", "")
    if not raw:
        raise InputError({field: _("Enter an amount.")})
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise InputError({field: _("Enter a number, e.g. 1280.50.")}) from None
    if not value.is_finite():
        raise InputError({field: _("Enter a number, e.g. 1280.50.")})
    if value < 0 or (value == 0 and not allow_zero):
        raise InputError({field: _("Enter an amount greater than zero.")})
    if -value.as_tuple().exponent > places:
        if places == 2:
            raise InputError({field: _("Amounts have at most 2 decimals (fen).")})
        raise InputError({field: _("Enter at most %(places)s decimals.", places=places)})
    if value >= Decimal("1e12") or (maximum is not None and value > maximum):
        raise InputError({field: _("This amount is too large.")})
    return value.quantize(Decimal(1).scaleb(-places))


def month_start(day: date) -> date:
    return day.replace(day=1)


def month_end(period: date) -> date:
    return period.replace(day=calendar.monthrange(period.year, period.month)[1])


def add_months(period: date, months: int) -> date:
    index = period.year * 12 + period.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def parse_period(text: str, field: str = "period") -> date:
    """"2026-05" (or a date in that month) -> date(2026, 5, 1)."""
    raw = (text or "").strip()
    try:
        if len(raw) == 7:
            year, month = raw.split("-")
            return date(int(year), int(month), 1)
        return month_start(date.fromisoformat(raw))
    except ValueError:
        raise InputError({field: _("Enter a month as YYYY-MM, e.g. 2026-05.")}) from None


def parse_date(text: str, field: str, *, required: bool = True) -> date | None:
    raw = (text or "").strip()
    if not raw:
        if required:
            raise InputError({field: _("Enter a date.")})
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise InputError({field: _("Enter a date as YYYY-MM-DD.")}) from None


def period_label(period: date) -> str:
    return f"{period.year}-{period.month:02d}"


def format_amount(value: Decimal) -> str:
    """¥1,280.50: how amounts are written into timeline entries (stored text, the same in every language)."""
    sign = "-" if value < 0 else ""
    return f"{sign}¥{abs(value):,.2f}"
