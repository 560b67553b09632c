"""Reading the activity form: every bad value gets a message next to its field."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from core.api import gettext as _
from plugins.activities import timeutil

MAX_CAPACITY = 100_000


@dataclass
class Parsed:
    values: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)  # read from the form, but not columns of the record


def text(raw: dict, name: str, parsed: Parsed, *, required: bool = False, max_length: int = 200) -> str:
    value = (raw.get(name) or "").strip()
    if required and not value:
        parsed.errors[name] = _("This field is required.")
    elif len(value) > max_length:
        parsed.errors[name] = _("At most %(max)s characters.", max=max_length)
    return value


def integer(raw: dict, name: str, parsed: Parsed, *, low: int, high: int, default: int | None = None) -> int | None:
    value = (raw.get(name) or "").strip()
    if not value and default is not None:
        return default
    try:
        number = int(value)
    except ValueError:
        parsed.errors[name] = _("Enter a whole number.")
        return None
    if not low <= number <= high:
        parsed.errors[name] = _("Enter a number from %(low)s to %(high)s.", low=low, high=high)
        return None
    return number


def money(raw: dict, name: str, parsed: Parsed) -> Decimal | None:
    value = (raw.get(name) or "").strip().replace(",", "").replace("¥", "")
    if not value:
        return Decimal("0")
    try:
        amount = Decimal(value)
    except InvalidOperation:
        parsed.errors[name] = _("Enter an amount such as 30 or 30.50.")
        return None
    if not amount.is_finite() or amount < 0 or amount != amount.quantize(Decimal("0.01")) or amount >= Decimal("1e12"):
        parsed.errors[name] = _("Enter an amount such as 30 or 30.50.")
        return None
    return amount


def moment(raw: dict, name: str, parsed: Parsed, tz: str, *, required: bool = False):
    value = (raw.get(name) or "").strip()
    if not value:
        if required:
            parsed.errors[name] = _("This field is required.")
        return None
    try:
        return timeutil.parse_local(value, tz)
    except ValueError:
        parsed.errors[name] = _("Enter a date and time, e.g. 2025-06-01 14:30.")
        return None


def id_list(values: list[str], allowed: set[int], name: str, parsed: Parsed) -> list[int]:
    chosen = []
    for raw in values:
        try:
            value = int(raw)
        except ValueError:
            value = None
        if value not in allowed:
            parsed.errors[name] = _("Choose from the listed options.")
            return []
        chosen.append(value)
    return sorted(set(chosen))
