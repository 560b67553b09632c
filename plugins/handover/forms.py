"""Reading form fields: each parser raises `HandoverError` naming the field, so the page shows it next to it."""

from __future__ import annotations

from datetime import date, datetime, timezone
from zoneinfo import ZoneInfo

from core.api import gettext
from plugins.handover.services import HandoverError


def text(form: dict, name: str, max_length: int = 255, required: bool = False, label_missing: str | None = None) -> str:
    value = (form.get(name) or "").strip()
    if required and not value:
        raise HandoverError(label_missing or gettext("This field is required."), name)
    if len(value) > max_length:
        raise HandoverError(gettext("At most %(n)s characters.", n=max_length), name)
    return value


def day(form: dict, name: str, required: bool = True) -> date | None:
    value = (form.get(name) or "").strip()
    if not value:
        if required:
            raise HandoverError(gettext("Enter a date."), name)
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise HandoverError(gettext("Enter the date as YYYY-MM-DD."), name) from None


def minute_of_day(form: dict, name: str) -> int:
    value = (form.get(name) or "").strip()
    try:
        hours, minutes = (int(part) for part in value.split(":")[:2])
    except ValueError:
        raise HandoverError(gettext("Enter the time as HH:MM."), name) from None
    if not (0 <= hours <= 24 and 0 <= minutes < 60) or hours * 60 + minutes > 24 * 60:
        raise HandoverError(gettext("Enter the time as HH:MM."), name)
    return hours * 60 + minutes


def integer(form: dict, name: str, low: int, high: int, default: int | None = None) -> int:
    value = (form.get(name) or "").strip()
    if not value and default is not None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise HandoverError(gettext("Enter a whole number."), name) from None
    if not low <= number <= high:
        raise HandoverError(gettext("Enter a number from %(low)s to %(high)s.", low=low, high=high), name)
    return number


def optional_id(form: dict, name: str) -> int | None:
    value = (form.get(name) or "").strip()
    if not value:
        return None
    if not value.isdigit():
        raise HandoverError(gettext("Choose one of the listed options."), name)
    return int(value)


def choice(form: dict, name: str, choices) -> str:
    value = (form.get(name) or "").strip()
    if value not in choices:
        raise HandoverError(gettext("Choose one of the listed options."), name)
    return value


def local_moment(form: dict, name: str, tz: str) -> datetime:
    """A `datetime-local` input read in the estate's time zone, as aware UTC."""
    value = (form.get(name) or "").strip()
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise HandoverError(gettext("Enter a date and time."), name) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=ZoneInfo(tz))
    return moment.astimezone(timezone.utc)


def checked(form: dict, name: str) -> bool:
    return (form.get(name) or "") in ("1", "on", "true", "yes")

