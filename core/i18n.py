"""Languages: gettext catalogs per plugin, the request's locale, and formatting.

Source strings are English. Each plugin (and core) keeps Babel catalogs in
`locale/<locale>/LC_MESSAGES/messages.po`; they are compiled in memory at
start-up, so no `.mo` files are committed. The locale of the current request
lives in a context variable; `gettext` and the template `_()` read it.

Each plugin's text is looked up in its own catalog first, then in core's, so
two plugins may give one English word different translations (the keys'
"Receipt" and the fees' "Receipt"):

- templates: `_()`, `gettext`, `ngettext`, `pgettext`, `npgettext` and
  `{% trans %}` in `templates/<plugin>/...` use `<plugin>`'s catalog. The
  plugin is named by the template's first folder, bound when the template is
  compiled (no per-call cost), so text in `core/base.html` stays core's even
  on a plugin's page, and a theme's override of `hotline/x.html` is hotline's.
- Python: `core.api.gettext` and friends use the catalog of the plugin whose
  package the calling module belongs to (cached per module name);
  `lazy_gettext` remembers the module when the label is made.

Core's own code (these functions without a plugin) and code outside any
plugin (tests, scripts) look in core's catalog, then in every plugin's.
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import sys
from contextvars import ContextVar
from datetime import date, datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Iterable, Mapping
from zoneinfo import ZoneInfo

from babel import Locale, dates, numbers
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import LazyProxy, NullTranslations, Translations
from jinja2 import nodes
from jinja2.ext import InternationalizationExtension
from jinja2.lexer import TOKEN_COMMA, TOKEN_STRING, Token

log = logging.getLogger("courtyard.i18n")

DEFAULT_LOCALE = "zh_CN"
LOCALES = ("zh_CN", "en")
LOCALE_NAMES = {"zh_CN": "简体中文", "en": "English"}
CORE = "core"

# Unset means the installation's default language (settings i18n.default_locale):
# what jobs, webhooks and pages without a user speak.
_locale: ContextVar[str | None] = ContextVar("courtyard_locale", default=None)
_default = DEFAULT_LOCALE


def set_default_locale(code: str) -> None:
    global _default
    _default = code if code in LOCALES else DEFAULT_LOCALE


def default_locale() -> str:
    return _default


# Catalogs -----------------------------------------------------------------

_NULL = NullTranslations()
# locale -> plugin name -> its catalog with core's underneath; None -> core's
# with every plugin's underneath (core's code, tests, unknown plugins).
_catalogs: dict[str, dict[str | None, NullTranslations]] = {}
# The same, flattened to msgid -> text for the hot path (`_()` runs thousands of times a page).
_messages: dict[str, dict[str | None, dict[str, str]]] = {}
# Python package -> plugin name, longest first; and the answer per module name.
_packages: list[tuple[str, str]] = []
_module_domains: dict[str, str] = {}


def _compile(po: Path, code: str) -> bytes:
    with open(po, "rb") as fh:
        catalog = read_po(fh, locale=code)
    buf = io.BytesIO()
    write_mo(buf, catalog)
    return buf.getvalue()


def _stack(compiled: list[bytes]) -> NullTranslations:
    """One catalog of several; a later one wins where they share a msgid."""
    result: Translations | None = None
    for mo in compiled:
        translations = Translations(io.BytesIO(mo))
        if result is None:
            result = translations
        else:
            result.merge(translations)
    return result or NullTranslations()


def _singulars(translations: NullTranslations) -> dict[str, str]:
    """msgid -> text, as `gettext` answers (a plural entry by its singular form)."""
    catalog = getattr(translations, "_catalog", {})
    flat = {key: text for key, text in catalog.items() if isinstance(key, str) and key}
    if catalog:
        one = translations.plural(1)
        for key, text in catalog.items():
            if isinstance(key, tuple) and key[1] == one:
                flat.setdefault(key[0], text)
    return flat


def load_catalogs(
    locale_dirs: Mapping[str, Path] | Iterable[Path],
    locales: Iterable[str] = LOCALES,
    packages: Mapping[str, str] | None = None,
) -> None:
    """Compile every plugin's `messages.po`.

    `locale_dirs`: plugin name -> its `locale/` folder (a plain list of folders
    names each by the folder it is in: `plugins/fees/locale` is "fees").
    `packages`: Python package -> plugin name, for `core.api.gettext`.
    """
    if isinstance(locale_dirs, Mapping):
        dirs = {name: Path(path) for name, path in locale_dirs.items()}
    else:
        dirs = {Path(path).parent.name: Path(path) for path in locale_dirs}
    _catalogs.clear()
    _messages.clear()
    for code in locales:
        compiled: dict[str, bytes] = {}
        for name, base in dirs.items():
            po = base / code / "LC_MESSAGES" / "messages.po"
            if po.is_file():
                compiled[name] = _compile(po, code)
        core = [compiled[CORE]] if CORE in compiled else []
        # A plugin without this locale's catalog still gets core's, not another plugin's words.
        table: dict[str | None, NullTranslations] = {
            name: _stack(core + ([compiled[name]] if name in compiled else [])) for name in dirs if name != CORE
        }
        table[None] = table[CORE] = _stack([mo for name, mo in compiled.items() if name != CORE] + core)
        _catalogs[code] = table
        _messages[code] = {name: _singulars(t) for name, t in table.items()}
    if packages is not None:
        _packages[:] = sorted(packages.items(), key=lambda item: len(item[0]), reverse=True)
        _module_domains.clear()


def load_plugin_catalogs(plugins: Iterable) -> None:
    """The catalogs of the host's plugins, each under its name, and their packages for `core.api.gettext`."""
    plugins = list(plugins)
    load_catalogs(
        {p.name: p.path / "locale" for p in plugins},  # without a catalog: core's words only
        packages={_package_of(p.module): p.name for p in plugins},
    )


def _package_of(module) -> str:
    name = module.__name__
    return name if hasattr(module, "__path__") else name.rpartition(".")[0]


def plugin_of_module(module_name: str) -> str:
    """The plugin whose package holds the module `module_name` (core when none does)."""
    try:
        return _module_domains[module_name]
    except KeyError:
        pass
    domain = next(
        (name for package, name in _packages if module_name == package or module_name.startswith(package + ".")),
        CORE,
    )
    _module_domains[module_name] = domain
    return domain


def plugin_of_template(name: str | None) -> str:
    """`"hotline/orders.html"` -> "hotline"; `"default:core/base.html"` -> "core"."""
    if not name:
        return CORE
    name = name.rpartition(":")[2]
    folder, slash, _rest = name.partition("/")
    return folder if slash else CORE


def _translations(domain: str | None) -> NullTranslations:
    table = _catalogs.get(_locale.get() or _default)
    if table is None:
        return _NULL
    found = table.get(domain)
    return found if found is not None else table[None]


# Locale -------------------------------------------------------------------


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


# Looking up text ----------------------------------------------------------
# `d...` functions take the plugin ("domain") first; templates call them with
# the plugin bound at compile time. Variables are %-formatted only when given.


def dgettext(domain: str | None, message: str, **variables) -> str:
    table = _messages.get(_locale.get() or _default)
    if table is None:
        text = message
    else:
        found = table.get(domain)
        text = (found if found is not None else table[None]).get(message, message)
    return text % variables if variables else text


def dngettext(domain: str | None, singular: str, plural: str, n: int, **variables) -> str:
    text = _translations(domain).ngettext(singular, plural, n)
    variables.setdefault("num", n)
    return text % variables


def dpgettext(domain: str | None, context: str, message: str, **variables) -> str:
    text = _translations(domain).pgettext(context, message)
    return text % variables if variables else text


def dnpgettext(domain: str | None, context: str, singular: str, plural: str, n: int, **variables) -> str:
    text = _translations(domain).npgettext(context, singular, plural, n)
    variables.setdefault("num", n)
    return text % variables


# Core's own text.


def gettext(message: str, **variables) -> str:
    return dgettext(CORE, message, **variables)


def ngettext(singular: str, plural: str, n: int, **variables) -> str:
    return dngettext(CORE, singular, plural, n, **variables)


def pgettext(context: str, message: str, **variables) -> str:
    return dpgettext(CORE, context, message, **variables)


def lazy_gettext(message: str, **variables) -> LazyProxy:
    """For labels defined at import time (manifests, permissions, choices)."""
    return LazyProxy(dgettext, CORE, message, enable_cache=False, **variables)


# For plugins (exported by core.api as gettext, ngettext, ...): the calling
# module's plugin, from one frame up (no stack walk) and a per-module cache.


def plugin_gettext(message: str, **variables) -> str:
    """`message` in the current language, from the calling plugin's catalog (then core's)."""
    return dgettext(plugin_of_module(sys._getframe(1).f_globals.get("__name__", "")), message, **variables)


def plugin_ngettext(singular: str, plural: str, n: int, **variables) -> str:
    """Singular or plural by `n` (also available as `%(num)s`), from the calling plugin's catalog."""
    return dngettext(plugin_of_module(sys._getframe(1).f_globals.get("__name__", "")), singular, plural, n, **variables)


def plugin_pgettext(context: str, message: str, **variables) -> str:
    """`message` as meant in `context` (msgctxt), for one English word with two meanings in one plugin."""
    return dpgettext(plugin_of_module(sys._getframe(1).f_globals.get("__name__", "")), context, message, **variables)


def _module_gettext(module: str, message: str, **variables) -> str:
    return dgettext(plugin_of_module(module), message, **variables)


def _module_pgettext(module: str, context: str, message: str, **variables) -> str:
    return dpgettext(plugin_of_module(module), context, message, **variables)


def plugin_lazy_gettext(message: str, **variables) -> LazyProxy:
    """A label defined at import time, translated when shown, from the defining plugin's catalog."""
    module = sys._getframe(1).f_globals.get("__name__", "")
    return LazyProxy(_module_gettext, module, message, enable_cache=False, **variables)


def plugin_lazy_pgettext(context: str, message: str, **variables) -> LazyProxy:
    """`lazy_gettext` with a msgctxt."""
    module = sys._getframe(1).f_globals.get("__name__", "")
    return LazyProxy(_module_pgettext, module, context, message, enable_cache=False, **variables)


# Templates ----------------------------------------------------------------

TEMPLATE_FUNCTIONS = {"_": dgettext, "gettext": dgettext, "ngettext": dngettext, "pgettext": dpgettext, "npgettext": dnpgettext}


class PluginCatalogs(InternationalizationExtension):
    """Jinja2's i18n extension, bound per template to the catalog of the plugin owning it.

    When a template is compiled, every call `_(...)`, `gettext(...)`,
    `ngettext(...)`, `pgettext(...)`, `npgettext(...)` and every `{% trans %}`
    gets the plugin's name as first argument: `_("Receipt")` in
    `fees/bill.html` runs as `_("fees", "Receipt")`.
    """

    def __init__(self, environment):
        super().__init__(environment)
        environment.newstyle_gettext = True  # {% trans %} passes its variables to the function
        environment.globals.update(TEMPLATE_FUNCTIONS)

    def filter_stream(self, stream):
        domain = plugin_of_template(stream.name)
        previous = None
        for token in stream:
            yield token
            if (
                token.type == "name"
                and token.value in TEMPLATE_FUNCTIONS
                and stream.current.type == "lparen"
                and not (previous is not None and (previous.type in ("dot", "pipe") or previous.test("name:macro")))
            ):
                yield next(stream)
                yield Token(token.lineno, TOKEN_STRING, domain)
                yield Token(token.lineno, TOKEN_COMMA, ",")
            previous = token

    def parse(self, parser):
        output = super().parse(parser)
        call = output.nodes[0]  # newstyle: the gettext call itself
        if isinstance(call, nodes.Call):
            call.args.insert(0, nodes.Const(plugin_of_template(parser.name)))
        return output


# Formatting ---------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def _parsed_locale(name: str) -> Locale:
    return Locale.parse(name)


def _babel_locale() -> Locale:
    # Parsing a locale name costs more than formatting the value: a list page formats hundreds.
    return _parsed_locale(get_locale())


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
        # Digits only, the same in every language we ship: strftime is many times faster than babel.
        return local.strftime("%Y-%m-%d %H:%M")
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
