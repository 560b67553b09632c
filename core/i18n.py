"""Languages: gettext catalogs per plugin, the request's locale, and formatting.

Source strings are English. Each plugin (and core) keeps Babel catalogs in
`locale/<locale>/LC_MESSAGES/messages.po`; they are compiled in memory at
start-up and merged, so no `.mo` files are committed. The locale of the
current request lives in a context variable; `gettext` and the template
`_()` read it.
"""

from __future__ import annotations

import contextlib
import io
import logging
from contextvars import ContextVar
from datetime import date, datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Iterable
from zoneinfo import ZoneInfo

from babel import Locale, dates, numbers
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import LazyProxy, NullTranslations, Translations

log = logging.getLogger("courtyard.i18n")

DEFAULT_LOCALE = "zh_CN"
LOCALES = ("zh_CN", "en")
LOCALE_NAMES = {"zh_CN": "简体中文", "en": "English"}

# Unset means the installation's default language (settings i18n.default_locale):
# what jobs, webhooks and pages without a user speak.
_locale: ContextVar[str | None] = ContextVar("courtyard_locale", default=None)
_default = DEFAULT_LOCALE


def set_default_locale(code: str) -> None:
    global _default
    _default = code if code in LOCALES else DEFAULT_LOCALE


def default_locale() -> str:
    return _default
_catalogs: dict[str, NullTranslations] = {}


def load_catalogs(locale_dirs: Iterable[Path], locales: Iterable[str] = LOCALES) -> None:
    """Compile and merge every `messages.po` of the given `locale/` directories."""
    _catalogs.clear()
    for code in locales:
        merged: Translations | None = None
        for base in locale_dirs:
            po = Path(base) / code / "LC_MESSAGES" / "messages.po"
            if not po.is_file():
                continue
            with open(po, "rb") as fh:
                catalog = read_po(fh, locale=code)
            buf = io.BytesIO()
            write_mo(buf, catalog)
            buf.seek(0)
            translations = Translations(buf)
            if merged is None:
                merged = translations
            else:
                merged.merge(translations)
        _catalogs[code] = merged or NullTranslations()


def set_locale(code: str) -> None:
    _locale.set(code if code in LOCALES else _default)


@contextlib.contextmanager
def keep_locale():
    """Restore the current locale when the block ends."""
    token = _locale.set(_locale.get())
    try:
        yield
    finally:
        _locale.reset(token)


@contextlib.contextmanager
def use_locale(code: str):
    """Render in `code` for a block (emails in the customer's language)."""
    token = _locale.set(code if code in LOCALES else _default)
    try:
        yield
    finally:
        _locale.reset(token)


def get_locale() -> str:
    return _locale.get() or _default


def _translations() -> NullTranslations:
    return _catalogs.get(get_locale()) or NullTranslations()


def gettext(message: str, **variables) -> str:
    text = _translations().gettext(message)
    return text % variables if variables else text


def ngettext(singular: str, plural: str, n: int, **variables) -> str:
    text = _translations().ngettext(singular, plural, n)
    variables.setdefault("num", n)
    return text % variables


def lazy_gettext(message: str, **variables) -> LazyProxy:
    """For labels defined at import time (manifests, permissions, choices)."""
    return LazyProxy(gettext, message, enable_cache=False, **variables)


# Formatting ---------------------------------------------------------------


def _babel_locale() -> Locale:
    return Locale.parse(get_locale())


def localtime(value: datetime, tz: str) -> datetime:
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(ZoneInfo(tz))


def local_today(tz: str, at: datetime | None = None) -> date:
    """The local date in time zone `tz` at `at` (default: now on core's clock, frozen in tests)."""
    from core import clock

    return localtime(at or clock.now(), tz).date()


def format_datetime(value: datetime | None, tz: str, fmt: str = "short") -> str:
    if value is None:
        return ""
    local = localtime(value, tz)
    if fmt == "short":
        pattern = "yyyy-MM-dd HH:mm"
        return dates.format_datetime(local, pattern, locale=_babel_locale())
    return dates.format_datetime(local, fmt, locale=_babel_locale())


def format_date(value: date | datetime | None, tz: str | None = None) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        value = localtime(value, tz or "UTC").date()
    return dates.format_date(value, "yyyy-MM-dd", locale=_babel_locale())


def format_money(value: Decimal | int | None) -> str:
    if value is None:
        return ""
    return numbers.format_currency(Decimal(value), "CNY", locale=_babel_locale())


def format_number(value, digits: int | None = None) -> str:
    if value is None:
        return ""
    if digits is not None:
        return numbers.format_decimal(value, format=f"#,##0.{'0' * digits}" if digits else "#,##0", locale=_babel_locale())
    return numbers.format_decimal(value, locale=_babel_locale())


def format_percent(value) -> str:
    if value is None:
        return "—"
    return numbers.format_percent(value, format="#,##0.0%", locale=_babel_locale())
