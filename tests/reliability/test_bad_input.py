"""Bad input: property-based tests (hypothesis) over every form, the PBX webhook and the import.

The forms are the ones the app renders: the demo estates are crawled as the head-office
admin (tests/reliability/walk.py) and every `<form method="post">` found is posted, one
form per route, with values drawn from CJK text, emoji, very long strings, NUL bytes,
HTML and SQL payloads, numbers where text is expected and text where numbers are,
several values for one field, and missing fields. A route no page offered a form for is
posted with junk fields only. Expected of every answer:

- never a 5xx;
- a 4xx carries a message for the user (a field error, an alert or an error page);
- HTML sent in is shown escaped on every page afterwards, and in every email queued.

Imports get random CSV content in UTF-8, GBK and UTF-16, wrong columns and broken
workbooks; uploads get files of every size up to past the limit.

The examples are derandomised (same inputs every run, so a failure reproduces) and few
per form (COURTYARD_FUZZ_EXAMPLES, default 6) so the suite stays fast; raise it locally
for a deeper run.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import time
from collections import defaultdict

import pytest
from hypothesis import HealthCheck, Phase, given, settings as hsettings, strategies as st

from core.scope import unscoped
from tests.reliability import walk
from tests.reliability.walk import ESTATE_A, PASSWORD

EXAMPLES = int(os.environ.get("COURTYARD_FUZZ_EXAMPLES", "6"))
PROBE = "<script>alert('xss')</script>"
PROBE_IMG = '<img src=x onerror="alert(1)">'
NASTY = [
    "张伟", "翠湖花园3栋2单元1502室，厨房漏水严重", "𠀀𠀁𪚥", "😀🏠🔑👨‍👩‍👧", "ａｂｃ１２３", "\u202eevil", "Ω≈ç√∫",
    "x" * 300, "长" * 5000, "a\x00b", "\x00", "\r\n\t", " ", "",
    PROBE, PROBE_IMG, "</textarea><script>x</script>", "{{ 7*7 }}", "{% raw %}",
    "' OR '1'='1", "1; DROP TABLE core_customer; --", "%s%s%n", "../../etc/passwd",
    "-1", "0", "1e309", "NaN", "99999999999999999999999", "3.14159", "-0.001", "1,000.50",
    "2026-02-30", "2026-13-01T25:61", "１３８００１３８０００", "+86 138 0013 8000", "138-0013-8000",
    "true", "null", "[]", "{}",
]
# Routes whose posts end the admin's own session or its ability to go on: left out (said in docs).
SKIP = {"/logout"}
ORDER_LAST = ("/modules/", "/admin/", "/jobs/", "/account/")


@pytest.fixture
async def database_url(db_kind_ok, database_factory, host, tmp_path):
    return await walk.demo_database(db_kind_ok, database_factory, host, tmp_path)


_CRAWLS: dict[str, walk.Crawl] = {}


async def demo_forms(app, db_kind) -> tuple[list[walk.Endpoint], walk.Crawl]:
    found = walk.endpoints(app)
    if db_kind not in _CRAWLS:
        admin = walk.new_client(app)
        await admin.login("admin", PASSWORD)
        with walk.quiet_server_errors():
            _CRAWLS[db_kind] = await walk.crawl(admin, walk.RouteIndex(found), ["/", f"/p/{ESTATE_A}/"])
        await admin.aclose()
    return found, _CRAWLS[db_kind]


def clear_message(response) -> bool:
    """A refusal the user can read: a field error, an alert, an error page or a toast."""
    if response.status_code in (301, 302, 303, 307):
        return True
    trigger = response.headers.get("HX-Trigger", "")
    if "showToast" in trigger:
        return True
    text = response.text
    return any(mark in text for mark in ('role="alert"', 'class="error', "has-error", "error-message", "alert-error"))


def field_values(fld: walk.Field, default):
    choices = [st.sampled_from(NASTY), st.text(max_size=40), st.integers(-10**12, 10**12).map(str)]
    if fld.options:
        choices.append(st.sampled_from(fld.options))
    if default is not None:
        choices.append(st.just(default))
    one = st.one_of(*choices)
    # None: the field is left out; a list: the field sent several times.
    return st.one_of(one, st.none(), st.lists(one, min_size=2, max_size=3))


def payloads(form: walk.Form):
    defaults = form.defaults()
    names = {}
    for fld in form.fields:
        if fld.name and fld.name != "csrftoken" and fld.kind not in ("file", "submit", "reset", "image") and fld.name not in names:
            names[fld.name] = field_values(fld, defaults.get(fld.name))
    if not names:  # a route without a known form: junk fields
        names = {"name": field_values(walk.Field("name", "text"), None), "id": field_values(walk.Field("id", "text"), None)}
    return st.fixed_dictionaries(names)


UPLOADS = st.tuples(
    st.sampled_from(["photo.jpg", "收据.pdf", "a" * 300 + ".png", "../../x.png", "x\x00.png", PROBE + ".png", "", "😀.gif"]),
    st.one_of(
        st.binary(max_size=256),
        st.binary(max_size=256).map(lambda b: b"\x89PNG\r\n\x1a\n" + b),
        st.binary(max_size=256).map(lambda b: b"%PDF-1.4\n" + b),
        st.just(b""),
    ),
)


def encode(values: dict) -> dict:
    data = {}
    for key, value in values.items():
        if value is None:
            continue
        data[key] = value
    return data


def shorten(value):
    """Inputs as a readable line for the failure report."""
    if isinstance(value, str):
        return value if len(value) <= 30 else f"{value[:12]}…({len(value)} chars)"
    if isinstance(value, dict):
        return {k: shorten(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shorten(v) for v in value]
    return value


class Fuzz:
    """Posts drawn inputs to the app from hypothesis (in a thread) and checks each answer."""

    def __init__(self, app, loop):
        self.app = app
        self.loop = loop
        self.client = walk.new_client(app)
        self.posts = 0
        self.refused = 0
        self.problems: list[str] = []
        self.pages_to_check: set[str] = set()
        self.index = walk.RouteIndex(walk.endpoints(app))
        self.kinds: dict[tuple[str, str], int] = {}

    def problem(self, url: str, kind: str, text: str) -> None:
        matched = self.index.match(url, "POST")
        key = (matched[0].path if matched else url, kind)
        self.kinds[key] = self.kinds.get(key, 0) + 1
        self.problems.append(text)

    async def login(self) -> None:
        await self.client.login("admin", PASSWORD)

    async def still_logged_in(self) -> None:
        if (await self.client.get("/")).status_code != 200:
            await self.login()

    async def post(self, form: walk.Form, values: dict, upload=None) -> None:
        token = await self.client.ensure_csrf()
        headers = {"x-csrftoken": token}
        if form.htmx:
            headers["HX-Request"] = "true"
        data = encode(values)
        files = None
        if form.multipart:
            name, content = upload or ("a.png", b"\x89PNG\r\n\x1a\n")
            files = {"file": (name, content, "application/octet-stream")}
        try:
            response = await self.client.post(form.action, data={"csrftoken": token, **data}, files=files, headers=headers)
        except Exception as exc:  # e.g. a value httpx itself cannot send
            if "non-printable" in str(exc) or "Invalid" in type(exc).__name__:
                return
            raise
        self.posts += 1
        where = f"POST {form.action} {json.dumps(shorten(data), ensure_ascii=False)[:300]}"
        if response.status_code >= 500:
            self.problem(form.action, "500", f"{where}: {response.status_code}")
        elif response.status_code >= 400:
            self.refused += 1
            if not clear_message(response):
                self.problem(form.action, "no message", f"{where}: {response.status_code} without a message")
        if PROBE in response.text or PROBE_IMG in response.text:
            self.problem(form.action, "unescaped", f"{where}: the answer shows HTML unescaped")
        location = response.headers.get("location") or response.headers.get("HX-Redirect")
        if location and location.startswith("/"):
            self.pages_to_check.add(location)

    def run(self, form: walk.Form, examples: int) -> None:
        """Hypothesis drives `post` from this (worker) thread on the test's event loop."""

        @hsettings(
            max_examples=examples, derandomize=True, deadline=None, database=None,
            phases=(Phase.explicit, Phase.generate), suppress_health_check=list(HealthCheck),
        )
        @given(values=payloads(form), upload=UPLOADS)
        def attempt(values, upload):
            asyncio.run_coroutine_threadsafe(self.post(form, values, upload), self.loop).result(120)

        attempt()

    async def fixed_inputs(self, form: walk.Form) -> None:
        """The same nasty value in every field at once: HTML, NUL, very long, CJK and emoji."""
        defaults = form.defaults()
        for value in (PROBE, "a\x00b", "长" * 20000, "𠀀😀" * 10):
            await self.post(form, {k: value for k in defaults} or {"name": value})

    async def escaped_everywhere(self, pages) -> int:
        from core.outbox import OutboxMessage

        checked = 0
        for url in sorted(pages):
            response = await self.client.get(url)
            checked += 1
            if PROBE in response.text or PROBE_IMG in response.text:
                self.problems.append(f"GET {url}: shows HTML that was sent in unescaped")
            elif response.status_code >= 500:
                self.problems.append(f"GET {url}: {response.status_code} after the bad input")
        with unscoped():
            for message in await OutboxMessage.all():
                if PROBE in (message.body_html or "") or PROBE_IMG in (message.body_html or ""):
                    self.problems.append(f"email {message.id} ({message.template}): HTML from input unescaped")
        return checked


def group_of(endpoint: walk.Endpoint) -> str:
    if endpoint.info.public:
        return "public"
    return endpoint.info.plugin if endpoint.info.in_project else "global"


GROUPS = ["core", "hotline", "complaints", "handover", "fees", "activities", "global"]


@pytest.mark.parametrize("group", GROUPS)
async def test_every_form_answers_bad_input_with_a_message_and_never_an_error(app, db_kind, group):
    found, crawled = await demo_forms(app, db_kind)
    index = walk.RouteIndex(found)
    fuzz = Fuzz(app, asyncio.get_running_loop())
    await fuzz.login()
    # One form per route (the first page that showed it, in estate A if it did), routes that end the session last.
    forms: dict[str, walk.Form] = {}
    elsewhere: dict[str, walk.Form] = {}  # e.g. a key set's return form when only estate B had one out
    for form in crawled.forms:
        matched = index.match(form.action, "POST")
        if matched and group_of(matched[0]) == group and matched[0].path not in SKIP:
            home = walk.estate_of(form.action) in (ESTATE_A, None)
            (forms if home else elsewhere).setdefault(matched[0].path, form)
    for path, form in elsewhere.items():
        forms.setdefault(path, form)
    # POST routes no page offered a form for: their path with junk fields.
    for endpoint in walk.uncovered_posts(found, crawled):
        if group_of(endpoint) == group and endpoint.path not in SKIP:
            forms.setdefault(endpoint.path, walk.Form(page="", action=endpoint.url(project=ESTATE_A)))
    assert forms or group == "global"
    started = time.perf_counter()
    with walk.quiet_server_errors():
        for path in sorted(forms, key=lambda p: (any(s in p for s in ORDER_LAST), p)):
            form = forms[path]
            await fuzz.fixed_inputs(form)
            await asyncio.to_thread(fuzz.run, form, EXAMPLES)
            await fuzz.still_logged_in()
            if form.page:
                fuzz.pages_to_check.add(form.page)
        pages = fuzz.pages_to_check | {u for u in crawled.pages if walk.estate_of(u) in (ESTATE_A, None) and "?" not in u}
        checked = await fuzz.escaped_everywhere(pages)
    print(f"\n{group}: {len(forms)} forms, {fuzz.posts} posts ({fuzz.refused} refused with a message), "
          f"{checked} pages checked for unescaped HTML, {time.perf_counter() - started:.0f}s")
    summary = "\n".join(f"{path} {kind} x{count}" for (path, kind), count in sorted(fuzz.kinds.items()))
    assert not fuzz.problems, summary + "\n\n" + "\n".join(fuzz.problems[:40])


# The PBX webhook ----------------------------------------------------------------------------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.sampled_from(NASTY) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=8,
)
EVENTS = st.fixed_dictionaries(
    {},
    optional={
        "event_id": JSON_VALUES, "event": st.sampled_from(["ringing", "answered", "ended", "missed", "dialling", ""]) | JSON_VALUES,
        "call_id": JSON_VALUES | st.sampled_from(["c-1", "c-2"]), "caller": st.sampled_from(NASTY) | JSON_VALUES,
        "extension": st.sampled_from(["8001", "", PROBE]) | JSON_VALUES, "timestamp": JSON_VALUES | st.sampled_from(
            ["2026-11-23T09:30:00+08:00", "yesterday", "9999-99-99"]),
    },
)
BODIES = st.one_of(
    EVENTS.map(lambda e: json.dumps(e, ensure_ascii=False).encode()),
    st.lists(EVENTS, max_size=4).map(lambda es: json.dumps({"events": es}).encode()),
    JSON_VALUES.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=200),
    st.sampled_from([b"", b"{", b"\x00", "{\"event\": \"ringing\", \"caller\": \"\x00\"}".encode(), b"\xff\xfe"]),
)


async def test_the_pbx_webhook_answers_any_signed_body_with_200_or_400(app):
    from core.models import Project
    from plugins.hotline.call_models import PbxIntegration
    from plugins.hotline.telephony import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign

    with unscoped():
        project = await Project.get(code=ESTATE_A)
        integration = await PbxIntegration.create(name="fuzz", project=project, secret="s3cret")
    client = walk.new_client(app)
    loop = asyncio.get_running_loop()
    answers: dict[int, int] = defaultdict(int)
    problems = []

    async def send(body: bytes) -> None:
        stamp = str(int(time.time()))
        response = await client.post(f"/hooks/hotline/pbx/{integration.id}", content=body, headers={
            TIMESTAMP_HEADER: stamp, SIGNATURE_HEADER: sign("s3cret", stamp, body), "content-type": "application/json",
        })
        answers[response.status_code] += 1
        if response.status_code not in (200, 400):
            problems.append(f"{body[:200]!r}: {response.status_code} {response.text[:200]}")
        else:
            response.json()  # always JSON, also for refusals

    @hsettings(max_examples=max(40, EXAMPLES * 10), derandomize=True, deadline=None, database=None,
               phases=(Phase.explicit, Phase.generate), suppress_health_check=list(HealthCheck))
    @given(body=BODIES)
    def attempt(body):
        asyncio.run_coroutine_threadsafe(send(body), loop).result(60)

    with walk.quiet_server_errors():
        await asyncio.to_thread(attempt)
    print(f"\nwebhook: {sum(answers.values())} signed bodies, answers {dict(answers)}")
    assert not problems, "\n".join(problems[:20])
    assert answers[400] > 0


# Imports and uploads --------------------------------------------------------------------------------

HEADERS = ["楼栋", "房号", "业主姓名", "电话", "面积", "楼层", "用途", "邮箱", "关系", "身份证号", "building", "unit", "name",
           "phone", "备注", "", "???", PROBE]
CELLS = st.one_of(st.sampled_from(NASTY), st.sampled_from(["1", "1-1-101", "张三", "13800138000", "88.5", "3", "住宅"]),
                  st.text(max_size=12))


def csv_file(header: list[str], rows: list[list[str]], encoding: str) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    for row in [header, *rows]:
        writer.writerow([c.replace("\x00", "") for c in row])
    return buffer.getvalue().encode(encoding, errors="replace")


IMPORT_FILES = st.one_of(
    st.tuples(
        st.just("业主.csv"),
        st.builds(
            csv_file,
            st.lists(st.sampled_from(HEADERS), min_size=1, max_size=6),
            st.lists(st.lists(CELLS, max_size=7), max_size=6),
            st.sampled_from(["utf-8", "utf-8-sig", "gbk", "gb18030", "utf-16", "latin-1", "big5"]),
        ),
    ),
    st.tuples(st.sampled_from(["房屋.xlsx", "a.xlsx"]), st.one_of(
        st.binary(max_size=300), st.binary(max_size=300).map(lambda b: b"PK\x03\x04" + b))),
    st.tuples(st.sampled_from(["x.csv", "y.txt"]), st.binary(max_size=300)),
)


def workbook(rows: list[list]) -> bytes:
    import openpyxl

    book = openpyxl.Workbook()
    for row in rows:
        book.active.append(row)
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


async def test_malformed_import_files_get_a_clear_report(app):
    from core.importer import ImportBatch

    client = walk.new_client(app)
    await client.login("admin", PASSWORD)
    loop = asyncio.get_running_loop()
    problems, tried = [], []

    async def upload(name: str, content: bytes) -> None:
        response = await client.post(
            f"/p/{ESTATE_A}/import", data={"csrftoken": client.csrf}, files={"file": (name, content, "application/octet-stream")}
        )
        tried.append(name)
        if response.status_code >= 500:
            problems.append(f"{name} {content[:80]!r}: upload answered {response.status_code}")
            return
        if response.status_code != 303:
            if not clear_message(response):
                problems.append(f"{name}: refused without a message")
            return
        report = await client.get(response.headers["location"])
        if report.status_code != 200:
            problems.append(f"{name} {content[:80]!r}: report page answered {report.status_code}")
        elif PROBE in report.text:
            problems.append(f"{name}: report shows HTML unescaped")
        # Every batch either reads its rows or says why not.
        with unscoped():
            batch = await ImportBatch.all().order_by("-id").first()
        if batch.state == "failed" and not clear_message(report):
            problems.append(f"{name}: a failed import without a message")

    fixed = [
        ("gbk.csv", csv_file(["楼栋", "房号", "业主姓名", "电话"], [["1", "1-1-101", "张三", "13800138000"]], "gbk")),
        ("wrong-columns.csv", csv_file(["姓名", "手机", "地址"], [["张三", "138", "x"]], "utf-8")),
        ("wrong-columns.xlsx", workbook([["foo", "bar"], [1, 2]])),
        ("only-header.xlsx", workbook([["楼栋", "房号"]])),
        ("empty.xlsx", workbook([])),
        ("numbers-as-text.xlsx", workbook([["楼栋", "房号", "面积", "楼层"], [1, "1-1-101", "大", "一楼"], [None, 3.5, -1, 10**12]])),
        ("broken.xlsx", b"PK\x03\x04broken"),
        ("truncated.xlsx", workbook([["楼栋", "房号"], ["1", "1-1-101"]])[:300]),
        ("utf16.csv", "楼栋\t房号\n1\t1-1-101\n".encode("utf-16")),
        ("nul.csv", b"\xe6\xa5\xbc\xe6\xa0\x8b,\xe6\x88\xbf\xe5\x8f\xb7\n1\x00,1-1-101\n"),
        ("empty.csv", b""),
    ]
    with walk.quiet_server_errors():
        for name, content in fixed:
            await upload(name, content)

        @hsettings(max_examples=max(20, EXAMPLES * 4), derandomize=True, deadline=None, database=None,
                   phases=(Phase.explicit, Phase.generate), suppress_health_check=list(HealthCheck))
        @given(upload_file=IMPORT_FILES)
        def attempt(upload_file):
            asyncio.run_coroutine_threadsafe(upload(*upload_file), loop).result(120)

        await asyncio.to_thread(attempt)
    print(f"\nimport: {len(tried)} files uploaded")
    assert not problems, "\n".join(problems[:30])


async def test_huge_uploads_and_fields_are_refused_with_a_message(app, settings):
    from core.models import Customer

    client = walk.new_client(app)
    await client.login("admin", PASSWORD)
    limit_mb = settings["storage"]["max_upload_mb"]
    huge = b"\x89PNG\r\n\x1a\n" + b"\x00" * ((limit_mb + 1) * 1024 * 1024)
    with unscoped():
        customer = await Customer.filter(project__code=ESTATE_A).order_by("id").first()
    target = f"/p/{ESTATE_A}/files/core.Customer/{customer.id}"
    for headers in ({}, {"HX-Request": "true"}):
        response = await client.post(target, data={"csrftoken": client.csrf}, files={"file": ("big.png", huge, "image/png")},
                                      headers={"x-csrftoken": client.csrf, **headers})
        assert response.status_code in (303, 413, 422) and clear_message(response), response.status_code
    response = await client.post(f"/p/{ESTATE_A}/import", data={"csrftoken": client.csrf}, files={"file": ("big.csv", huge, "text/csv")})
    assert response.status_code in (413, 422) and "MB" in response.text
    # A form field of 5 MB (a pasted document): refused with a message, nothing stored.
    before = await walk.table_counts()
    response = await client.post(
        f"/p/{ESTATE_A}/timeline/core.Customer/{customer.id}/notes",
        data={"csrftoken": client.csrf, "body": "长" * (5 * 1024 * 1024 // 3)}, headers={"HX-Request": "true", "x-csrftoken": client.csrf},
    )
    assert 400 <= response.status_code < 500 and clear_message(response), response.status_code
    assert await walk.table_counts() == before
