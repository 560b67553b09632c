"""CSRF tokens of plain (non-htmx) file upload forms.

asgi-csrf 0.11 cannot read multipart bodies with python-multipart 0.0.26 and
later (simonw/asgi-csrf#38: it passes a removed `FileClass` argument and
crashes), and older python-multipart releases have known vulnerabilities.
htmx requests carry the token in the `x-csrftoken` header and never reach
that code; browser form posts do. This middleware sits in front of asgi-csrf:
for a multipart POST without the header it reads the body up to the
`csrftoken` field (our forms put it before any file); if it equals the
cookie it hands the value on as the header and replays the body, and
asgi-csrf still verifies the cookie's signature. A body whose token is
missing, different from the cookie, or after the first file is refused
with 403, as asgi-csrf would.
"""

from __future__ import annotations

import hmac
from http.cookies import CookieError, SimpleCookie
from typing import Any

from python_multipart.multipart import MultipartParser, parse_options_header

SAFE_METHODS = {"GET", "HEAD", "OPTIONS", "TRACE"}
HEADER = b"x-csrftoken"
FIELD = b"csrftoken"
MAX_SCAN = 64 * 1024  # the token is near the start; never buffer a whole upload looking for it


class _TokenScan:
    def __init__(self, boundary: bytes):
        self.token: bytes | None = None
        self.stop = False  # token found, or a file (or too much) came first
        self._header_field = b""
        self._header_value = b""
        self._name: bytes | None = None
        self._data = b""
        self.parser = MultipartParser(boundary, {
            "on_part_begin": self._part_begin,
            "on_header_field": self._field,
            "on_header_value": self._value,
            "on_header_end": self._header_end,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
        })

    def _part_begin(self) -> None:
        self._name, self._data = None, b""

    def _field(self, data: bytes, start: int, end: int) -> None:
        self._header_field += data[start:end]

    def _value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _header_end(self) -> None:
        if self._header_field.lower() == b"content-disposition":
            _kind, options = parse_options_header(self._header_value)
            if b"filename" in options:
                self.stop = True  # a file before the token
            self._name = options.get(b"name")
        self._header_field = self._header_value = b""

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._name == FIELD:
            self._data += data[start:end]

    def _part_end(self) -> None:
        if self._name == FIELD:
            self.token = self._data
            self.stop = True

    def feed(self, chunk: bytes) -> None:
        if not self.stop:
            self.parser.write(chunk)


def _cookie_token(cookie_header: bytes) -> bytes:
    cookies = SimpleCookie()
    try:
        cookies.load(cookie_header.decode("latin-1"))
    except CookieError:
        return b""
    morsel = cookies.get(FIELD.decode())
    return morsel.value.encode("latin-1") if morsel else b""


class MultipartCsrfToken:
    def __init__(self, app, skip_if_scope=None):
        self.app = app
        self.skip_if_scope = skip_if_scope

    async def __call__(self, scope: dict[str, Any], receive, send) -> None:
        if scope["type"] != "http" or scope["method"] in SAFE_METHODS:
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        content_type, options = parse_options_header(headers.get(b"content-type", b""))
        if content_type != b"multipart/form-data" or HEADER in headers or not options.get(b"boundary"):
            return await self.app(scope, receive, send)
        # Posts asgi-csrf does not check (no cookies, exempt paths, bearer tokens) pass untouched.
        if (
            not headers.get(b"cookie")
            or (self.skip_if_scope and self.skip_if_scope(scope))
            or headers.get(b"authorization", b"").startswith(b"Bearer ")
        ):
            return await self.app(scope, receive, send)

        scan = _TokenScan(options[b"boundary"])
        messages: list[dict[str, Any]] = []
        seen = 0
        while not scan.stop and seen <= MAX_SCAN:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            body = message.get("body", b"")
            seen += len(body)
            try:
                scan.feed(body)
            except Exception:  # a malformed body: no token to find
                break
            if not message.get("more_body", False):
                break
        if scan.token is None or not hmac.compare_digest(scan.token, _cookie_token(headers[b"cookie"])):
            # asgi-csrf would go on to read the body itself, which is what crashes.
            await send({"type": "http.response.start", "status": 403, "headers": [(b"content-type", b"text/plain; charset=utf-8")]})
            await send({"type": "http.response.body", "body": b"CSRF check failed: the csrftoken field is missing, wrong, or after the file"})
            return

        async def replay():
            return messages.pop(0) if messages else await receive()

        scope = {**scope, "headers": [*scope["headers"], (HEADER, scan.token)]}
        await self.app(scope, replay, send)
