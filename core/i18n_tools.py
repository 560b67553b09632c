"""Message catalogs for developers: extract, update, and check completeness.

`python3 run.py i18n` extracts every translatable string of each plugin (and
core) from its Python code and templates into its own
`locale/<locale>/LC_MESSAGES/messages.po`, keeping existing translations.
English is the source language, so the `en` catalog may leave strings
untranslated (they show as written); `zh_CN` must translate every one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po, write_po

from core.plugins import LoadedPlugin, PluginHost

KEYWORDS = {
    "_": None, "_l": None, "gettext": None, "lazy_gettext": None, "ngettext": (1, 2),
    "pgettext": ((1, "c"), 2), "lazy_pgettext": ((1, "c"), 2), "npgettext": ((1, "c"), 2, 3),
}
METHOD_MAP = [
    ("**/tests/**", "ignore"),
    ("**/locale/**", "ignore"),
    ("**/static/**", "ignore"),
    ("**.py", "python"),
    ("**/templates/**.html", "jinja2"),
    ("**/templates/**.txt", "jinja2"),
]
JINJA_OPTIONS = {"extensions": "jinja2.ext.do", "newstyle_gettext": "true", "trimmed": "false"}
TRANSLATED_LOCALES = ("zh_CN",)
ALL_LOCALES = ("zh_CN", "en")


def extract(plugin: LoadedPlugin) -> Catalog:
    catalog = Catalog(project="Courtyard", version=plugin.manifest.version, charset="utf-8")
    base = plugin.path
    options = {"**/templates/**.html": JINJA_OPTIONS, "**/templates/**.txt": JINJA_OPTIONS}
    for filename, lineno, message, comments, context in extract_from_dir(
        str(base), METHOD_MAP, options_map=options, keywords=KEYWORDS, strip_comment_tags=True
    ):
        catalog.add(message, None, [(filename, lineno)], auto_comments=comments, context=context)
    return catalog


def po_path(plugin: LoadedPlugin, locale: str) -> Path:
    return plugin.path / "locale" / locale / "LC_MESSAGES" / "messages.po"


def load_po(path: Path, locale: str) -> Catalog | None:
    if not path.is_file():
        return None
    with open(path, "rb") as fh:
        return read_po(fh, locale=locale)


def update(plugin: LoadedPlugin) -> dict[str, int]:
    """Bring each locale's catalog in line with the code; returns missing counts per locale."""
    template = extract(plugin)
    missing: dict[str, int] = {}
    for locale in ALL_LOCALES:
        path = po_path(plugin, locale)
        catalog = load_po(path, locale) or Catalog(locale=locale, project="Courtyard", charset="utf-8")
        catalog.update(template, no_fuzzy_matching=True)
        catalog.obsolete.clear()
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as fh:
            write_po(fh, catalog, width=0, omit_header=False, sort_output=True, include_previous=False)
        missing[locale] = sum(1 for m in catalog if m.id and not _translated(m))
    return missing


def _translated(message) -> bool:
    if message.fuzzy:
        return False
    if isinstance(message.string, tuple):
        return all(message.string)
    return bool(message.string)


@dataclass
class Gap:
    plugin: str
    locale: str
    message: str
    where: str


def untranslated(host: PluginHost, locales=TRANSLATED_LOCALES) -> list[Gap]:
    """Strings in code/templates without a translation in each required locale."""
    gaps: list[Gap] = []
    for plugin in host.plugins:
        template = extract(plugin)
        for locale in locales:
            catalog = load_po(po_path(plugin, locale), locale)
            for message in template:
                if not message.id:
                    continue
                found = catalog.get(message.id, context=message.context) if catalog else None
                if found is None or not _translated(found):
                    where = f"{message.locations[0][0]}:{message.locations[0][1]}" if message.locations else "?"
                    text = message.id if isinstance(message.id, str) else message.id[0]
                    gaps.append(Gap(plugin.name, locale, text, where))
    return gaps


# Text in templates that is not wrapped in _() ------------------------------

_EXPR = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.S)
_TAG = re.compile(r"<(script|style)\b.*?</\1>|<!--.*?-->|<[^>]+>", re.S | re.I)
_ATTR = re.compile(r'\b(?:placeholder|title|aria-label|alt|data-confirm|hx-confirm)="([^"{]*[A-Za-z][^"{]*)"')
_WORD = re.compile(r"[A-Za-z]{2,}")
# Not UI language: brand, units, formats and codes shown as written.
ALLOWED_WORDS = {"Courtyard", "CNY", "m²", "HH", "mm", "yyyy", "MM", "dd", "ID", "QR", "PDF", "URL", "PBX", "SLA", "KPI", "xlsx", "csv", "SSE", "WeChat", "CSV", "XLSX", "Excel", "FAQ", "HTTP", "SMTP", "OK"}


def bare_template_text(path: Path) -> list[str]:
    """English words in a template's visible text or labelled attributes outside `_()`."""
    source = path.read_text(encoding="utf-8")
    found = [m.group(1) for m in _ATTR.finditer(source)]
    text = _EXPR.sub(" ", source)
    text = _TAG.sub(" ", text)
    text = re.sub(r"&[a-z]+;|&#\d+;", " ", text)
    for chunk in text.split("\n"):
        chunk = chunk.strip()
        # Leftovers of tags cut by template expressions, and URL paths, are not prose.
        if "=" in chunk or chunk.startswith("/"):
            continue
        words = [w for w in _WORD.findall(chunk) if w not in ALLOWED_WORDS]
        if words:
            found.append(chunk)
    return found
