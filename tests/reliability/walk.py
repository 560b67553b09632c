"""Walking the running app as its users do, for the bad-input and security sweeps.

- `endpoints(app)`: every registered route (core and plugins), so routes added later
  are covered without touching the tests.
- `crawl(...)`: follows the links (`href`, `hx-get`) of the rendered pages from the
  start pages, at most a few concrete URLs per route and estate, and collects every
  `<form method="post">` with its fields as the browser would send them.
- `demo_database(...)`: a copy of a database holding the demo estates (loaded once per
  test process and database kind, then copied per test like the migrated template).

Forms are taken from the rendered pages (not from the views' code) because that is
what users can actually submit; POST routes no page offered a form for are listed by
`uncovered_posts` and driven with their path alone (see docs/reliability.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import uuid
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urljoin, urlsplit

from starlette.routing import Mount, Route

from core import settings as settings_module
from core.demo import DEMO_PASSWORD

ESTATE_A, ESTATE_B = "CUIHU", "JINXIU"
ROLES = ("manager", "agent", "staff", "cashier", "readonly")
PREFIX = {ESTATE_A: "ch", ESTATE_B: "jx"}
PASSWORD = DEMO_PASSWORD
# Tables that every request may write to: sessions, the access log, login throttling, realtime.
BOOKKEEPING_TABLES = {"core_session", "core_access_event", "core_login_throttle", "core_realtime_message"}

_PARAM = re.compile(r"{(\w+)(?::(\w+))?}")


# Routes ----------------------------------------------------------------------------


@dataclass
class Endpoint:
    path: str  # the full path template, e.g. /p/{project}/hotline/orders/{id:int}
    route: Route

    @property
    def info(self):
        return self.route.courtyard

    @property
    def methods(self) -> list[str]:
        return sorted(m for m in (self.route.methods or {"GET"}) if m != "HEAD")

    @property
    def changing(self) -> bool:
        return any(m != "GET" for m in self.methods)

    @property
    def params(self) -> list[str]:
        return [m.group(1) for m in _PARAM.finditer(self.path)]

    @property
    def pattern(self) -> re.Pattern:
        def part(m: re.Match) -> str:
            kind = m.group(2) or "str"
            body = {"int": r"\d+", "path": r".*"}.get(kind, r"[^/]+")
            return f"(?P<{m.group(1)}>{body})"

        pieces, last = [], 0
        for m in _PARAM.finditer(self.path):
            pieces.append(re.escape(self.path[last : m.start()]))
            pieces.append(part(m))
            last = m.end()
        pieces.append(re.escape(self.path[last:]))
        return re.compile("^" + "".join(pieces) + "$")

    def url(self, **values: Any) -> str:
        """The path with parameters filled: given values first, then a harmless placeholder."""

        def fill(m: re.Match) -> str:
            if m.group(1) in values:
                return str(values[m.group(1)])
            return "1" if m.group(2) == "int" else "x"

        return _PARAM.sub(fill, self.path)

    def __repr__(self) -> str:
        return f"<{','.join(self.methods)} {self.path}>"


def endpoints(app) -> list[Endpoint]:
    def walk(routes, prefix: str = ""):
        for r in routes:
            if isinstance(r, Mount):
                if not r.path.startswith("/static"):
                    yield from walk(r.routes or [], prefix + r.path)
            elif isinstance(r, Route) and hasattr(r, "courtyard"):
                yield Endpoint(prefix + r.path, r)

    # The JSON API (/api/) answers bearer tokens only, never the session cookie: its own
    # suite covers it (docs/api.md); the sweeps here are about what browsers reach.
    return [e for e in walk(app.router.routes) if not e.path.startswith("/api/")]


class RouteIndex:
    """Finds the endpoint a concrete URL and method go to (the first match, like Starlette)."""

    def __init__(self, found: list[Endpoint]):
        self.found = found
        self._compiled = [(e, e.pattern) for e in found]

    def match(self, url: str, method: str = "GET") -> tuple[Endpoint, dict[str, str]] | None:
        path = urlsplit(url).path
        for endpoint, pattern in self._compiled:
            m = pattern.match(path)
            if m and (method in endpoint.methods or (method == "HEAD" and "GET" in endpoint.methods)):
                return endpoint, m.groupdict()
        return None


def estate_of(url: str) -> str | None:
    m = re.match(r"^/p/([^/]+)/", urlsplit(url).path)
    return m.group(1) if m else None


# Pages and forms --------------------------------------------------------------------


@dataclass
class Field:
    name: str
    kind: str  # input type, "select", "textarea" or "button"
    value: str = ""
    options: list[str] = field(default_factory=list)  # select options, radio and button values
    checked: bool = False
    required: bool = False
    maxlength: int | None = None


@dataclass
class Form:
    page: str  # the URL of the page that showed it
    action: str
    enctype: str = "application/x-www-form-urlencoded"
    htmx: bool = False
    fields: list[Field] = field(default_factory=list)

    @property
    def multipart(self) -> bool:
        return "multipart" in self.enctype

    def defaults(self) -> dict[str, Any]:
        """What the browser sends when the form is submitted as shown (first option, checked boxes)."""
        data: dict[str, Any] = {}
        for f in self.fields:
            if f.name == "csrftoken" or f.kind in ("file", "button", "submit", "reset", "image"):
                continue
            if f.kind in ("checkbox", "radio"):
                if f.checked:
                    data[f.name] = f.value or "on"
                elif f.kind == "radio" and f.name not in data and f.required and f.options:
                    data[f.name] = f.options[0]
                continue
            if f.kind == "select":
                data[f.name] = f.value if f.value else next((o for o in f.options if o), "")
                continue
            data[f.name] = f.value
        for f in self.fields:  # the first submit button with a name says what the form does
            if f.kind in ("button", "submit") and f.name and f.name not in data:
                data[f.name] = f.value
        return data

    def names(self) -> list[str]:
        return sorted({f.name for f in self.fields if f.name and f.name != "csrftoken"})


class _PageParser(HTMLParser):
    def __init__(self, page: str):
        super().__init__(convert_charrefs=True)
        self.page = page
        self.links: list[str] = []
        self.forms: list[Form] = []
        self._form: Form | None = None
        self._select: Field | None = None
        self._textarea: Field | None = None
        self._option_value: str | None = None
        self._option_selected = False

    def _url(self, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip()
        if not value or value.startswith(("#", "javascript:", "mailto:", "tel:", "data:")):
            return None
        absolute = urljoin(self.page, value)
        parts = urlsplit(absolute)
        if parts.netloc and parts.netloc not in ("testserver", "127.0.0.1", "localhost") and not parts.netloc.startswith("127.0.0.1:"):
            return None
        return parts.path + (f"?{parts.query}" if parts.query else "")

    def handle_starttag(self, tag: str, attrs_list) -> None:
        attrs = {k: (v if v is not None else "") for k, v in attrs_list}
        for attr in ("href", "hx-get"):
            if attr in attrs and tag != "link":
                url = self._url(attrs[attr])
                if url:
                    self.links.append(url)
        if tag == "form":
            method = (attrs.get("method") or "get").lower()
            action = attrs.get("hx-post") or attrs.get("action") or self.page
            if method == "post" or "hx-post" in attrs:
                self._form = Form(
                    page=self.page,
                    action=self._url(action) or urlsplit(self.page).path,
                    enctype=attrs.get("enctype") or "application/x-www-form-urlencoded",
                    htmx="hx-post" in attrs,
                )
                self.forms.append(self._form)
            else:
                self._form = None
            return
        form = self._form
        if form is None:
            return
        name = attrs.get("name", "")
        if tag == "input" and name:
            kind = (attrs.get("type") or "text").lower()
            maxlength = int(attrs["maxlength"]) if attrs.get("maxlength", "").isdigit() else None
            existing = next((f for f in form.fields if f.name == name and f.kind == kind == "radio"), None)
            if existing is not None:
                existing.options.append(attrs.get("value", "on"))
                if "checked" in attrs:
                    existing.value, existing.checked = attrs.get("value", "on"), True
                return
            form.fields.append(Field(
                name, kind, attrs.get("value", ""), [attrs.get("value", "on")] if kind == "radio" else [],
                checked="checked" in attrs, required="required" in attrs, maxlength=maxlength,
            ))
        elif tag == "button" and name:
            form.fields.append(Field(name, "button", attrs.get("value", ""), [attrs.get("value", "")]))
        elif tag == "select" and name:
            self._select = Field(name, "select", "", [], required="required" in attrs)
            form.fields.append(self._select)
        elif tag == "option" and self._select is not None:
            self._option_value = attrs.get("value")
            self._option_selected = "selected" in attrs
            if self._option_value is not None:
                self._add_option(self._option_value)
        elif tag == "textarea" and name:
            maxlength = int(attrs["maxlength"]) if attrs.get("maxlength", "").isdigit() else None
            self._textarea = Field(name, "textarea", "", required="required" in attrs, maxlength=maxlength)
            form.fields.append(self._textarea)

    def _add_option(self, value: str) -> None:
        assert self._select is not None
        self._select.options.append(value)
        if self._option_selected:
            self._select.value = value
        self._option_value = None

    def handle_data(self, data: str) -> None:
        if self._textarea is not None:
            self._textarea.value += data
        elif self._select is not None and self._option_value is None and self._option_selected is not None:
            pass

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._form = None
        elif tag == "select":
            self._select = None
        elif tag == "textarea":
            self._textarea = None


def parse_page(url: str, html: str) -> tuple[list[str], list[Form]]:
    parser = _PageParser(url)
    parser.feed(html)
    parser.close()
    return parser.links, parser.forms


# Crawling ---------------------------------------------------------------------------


@dataclass
class Crawl:
    pages: dict[str, int] = field(default_factory=dict)  # URL -> status
    forms: list[Form] = field(default_factory=list)
    reached: dict[str, list[str]] = field(default_factory=dict)  # route path -> concrete URLs (GET)
    posts: dict[str, list[str]] = field(default_factory=dict)  # route path -> form actions

    def forms_for(self, endpoint: Endpoint) -> list[Form]:
        index = RouteIndex([endpoint])
        return [f for f in self.forms if index.match(f.action, "POST")]


def _skip(endpoint: Endpoint) -> bool:
    # The event stream never ends by design; signing out would end the crawl.
    return endpoint.route.name in ("events", "logout")


async def crawl(client, index: RouteIndex, start: list[str], *, per_route: int = 3, limit: int = 800) -> Crawl:
    """Breadth-first over the links of rendered pages (same site, registered GET routes only)."""
    result = Crawl()
    queue = list(start)
    seen: set[str] = set()
    per_key: dict[tuple[str, str | None], int] = {}
    form_keys: set[tuple[str, tuple[str, ...]]] = set()
    while queue and len(result.pages) < limit:
        url = queue.pop(0)
        if url in seen:
            continue
        seen.add(url)
        matched = index.match(url, "GET")
        if matched is None or _skip(matched[0]):
            continue
        endpoint = matched[0]
        key = (endpoint.path, estate_of(url))
        if per_key.get(key, 0) >= per_route:
            continue
        per_key[key] = per_key.get(key, 0) + 1
        response = await client.get(url)
        result.pages[url] = response.status_code
        result.reached.setdefault(endpoint.path, []).append(url)
        if not response.headers.get("content-type", "").startswith("text/html"):
            continue
        links, forms = parse_page(url, response.text)
        for form in forms:
            posted = index.match(form.action, "POST")
            if posted is None:
                continue
            fkey = (form.action, tuple(form.names()))
            if fkey in form_keys:
                continue
            form_keys.add(fkey)
            result.forms.append(form)
            result.posts.setdefault(posted[0].path, []).append(form.action)
        queue.extend(u for u in links if u not in seen)
    return result


def uncovered_posts(found: list[Endpoint], crawled: Crawl) -> list[Endpoint]:
    return [e for e in found if e.changing and not e.info.webhook and e.path not in crawled.posts]


# Demo databases -----------------------------------------------------------------------


_DEMO_TEMPLATES: dict[tuple[str, tuple[str, ...]], str] = {}


def app_settings(database_url: str, storage: str) -> settings_module.Settings:
    """The settings `core.testing` gives the app, for work done before the app starts."""
    s = settings_module.load(environ={})
    s.data["database"]["url"] = database_url
    s.data["storage"]["path"] = storage
    s.data["security"]["secret_key"] = "test-secret"
    s.data["smtp"]["host"] = ""
    s.data["server"]["embedded_worker"] = False
    s.data["i18n"]["default_locale"] = "en"
    return s


def _load_demo_into(url: str, host, storage: str) -> None:
    from core import db
    from core.demo import load_demo

    async def load() -> None:
        await db.init(host, url)
        try:
            await load_demo(host)
        finally:
            await db.close()

    from core.plugins import use_host

    settings = settings_module.use(app_settings(url, storage))
    use_host(host)
    host.apply_settings(settings)
    asyncio.run(load())


async def demo_database(kind: str, factory, host, tmp_path) -> str:
    """A fresh database holding the demo estates (copied from one loaded per process and kind)."""
    from core.testing import _pg_admin, _pg_server_url

    key = (kind, tuple(host.names))
    loop = asyncio.get_running_loop()
    if key not in _DEMO_TEMPLATES:
        url = await factory.fresh(kind, host)
        storage = str(factory.tmp / f"demo-files-{uuid.uuid4().hex[:6]}")
        # In a thread of its own: no Tortoise context of this test around (see DatabaseFactory.fresh).
        await loop.run_in_executor(None, _load_demo_into, url, host, storage)
        _DEMO_TEMPLATES[key] = url
    template = _DEMO_TEMPLATES[key]
    if kind == "sqlite":
        path = tmp_path / f"demo-{uuid.uuid4().hex[:8]}.sqlite3"
        shutil.copyfile(template.removeprefix("sqlite://"), path)
        return f"sqlite://{path}"
    name = f"cy_t_{uuid.uuid4().hex[:12]}"
    source = urlsplit(template).path.lstrip("/")
    await _pg_admin(f'CREATE DATABASE "{name}" TEMPLATE "{source}"')
    factory.created_pg.append(name)
    return _pg_server_url(name)


# Database fingerprints -----------------------------------------------------------------


async def table_counts() -> dict[str, int]:
    """Rows per table of every model (outside any scope), bookkeeping tables left out."""
    from core.db import all_models
    from core.scope import unscoped

    counts = {}
    with unscoped():
        for model in all_models():
            table = model._meta.db_table
            if table in BOOKKEEPING_TABLES or model._meta.abstract:
                continue
            counts[table] = await model.all().count()
    return counts


async def fingerprint() -> dict[str, str]:
    """A digest of every row of every table (bookkeeping tables left out): any change shows up."""
    import hashlib

    from core.db import all_models
    from core.scope import unscoped

    result: dict[str, str] = {}
    with unscoped():
        for model in all_models():
            table = model._meta.db_table
            if table in BOOKKEEPING_TABLES or model._meta.abstract:
                continue
            rows = await model.all().order_by(model._meta.pk_attr).values_list(*sorted(model._meta.fields_db_projection))
            digest = hashlib.sha256(repr(rows).encode()).hexdigest()[:16]
            result[table] = f"{len(rows)} rows {digest}"
    return result


def diff(before: dict[str, Any], after: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    return {k: (before.get(k), after.get(k)) for k in sorted(set(before) | set(after)) if before.get(k) != after.get(k)}


@contextlib.contextmanager
def quiet_server_errors():
    """The app logs the tracebacks of 500s; the tests report them in their own words."""
    import logging

    logger = logging.getLogger("courtyard.app")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def new_client(app, ip: str = "127.0.0.1"):
    """A client that gets the 500 page instead of the exception, from a given address."""
    import httpx

    from core.testing import Client

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False, client=(ip, 50000))
    return Client(transport=transport, base_url="http://testserver")
