"""The Starlette application, assembled from what the plugins register."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any

from asgi_csrf import asgi_csrf
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles
from tortoise.exceptions import ValidationError

from core import db, i18n
from core import settings as settings_module
from core.csrf_multipart import MultipartCsrfToken
from core.directory import Directory
from core.plugins import PluginHost, use_host
from core.scope import OutOfScope
from core.templating import THEMES_DIR, Templates, list_themes
from core.web import RouteInfo

log = logging.getLogger("courtyard.app")

# Paths that machines post to with their own signatures or bearer tokens, not browsers
# (the JSON API never reads the session cookie, so a forged cross-site request has no credentials).
CSRF_EXEMPT_PREFIXES = ("/hooks/", "/api/")


def _plugin_dirs(host: PluginHost, hook: str, default_sub: str) -> list[tuple[str, Path]]:
    dirs: list[tuple[str, Path]] = []
    for plugin in host.plugins:
        default = plugin.path / default_sub
        if default.is_dir():
            dirs.append((plugin.name, default))
    for result in host.call_sync(hook):
        for path in result.value or []:
            dirs.append((result.plugin, Path(path)))
    return dirs


def _tag(routes: list[BaseRoute], plugin: str, in_project: bool) -> list[BaseRoute]:
    for r in routes:
        info: RouteInfo | None = getattr(r, "courtyard", None)
        if info is None:
            raise TypeError(f"plugin {plugin}: routes must be built with core.api.route (got {r!r})")
        info.plugin = plugin
        info.in_project = in_project
    return routes


def build_routes(host: PluginHost) -> list[BaseRoute]:
    project_routes: list[BaseRoute] = []
    global_routes: list[BaseRoute] = []
    for result in host.call_sync("register_routes"):
        routes = _tag(list(result.value or []), result.plugin, True)
        if result.plugin == "core":
            project_routes.extend(routes)
        else:
            project_routes.append(Mount(f"/{result.plugin}", routes=routes))
    webhook_routes: list[BaseRoute] = []
    for result in host.call_sync("register_global_routes"):
        routes = _tag(list(result.value or []), result.plugin, False)
        hooks = [r for r in routes if r.courtyard.webhook]  # type: ignore[attr-defined]
        pages = [r for r in routes if not r.courtyard.webhook]  # type: ignore[attr-defined]
        if hooks:
            webhook_routes.append(Mount(f"/hooks/{result.plugin}", routes=hooks))
        if result.plugin == "core":
            global_routes.extend(pages)
        elif pages:
            global_routes.append(Mount(f"/{result.plugin}", routes=pages))
    statics: list[BaseRoute] = []
    for plugin, path in _plugin_dirs(host, "register_static_dirs", "static"):
        for sub in sorted(p for p in path.iterdir() if p.is_dir()):
            statics.append(Mount(f"/static/{sub.name}", StaticFiles(directory=sub)))
    for theme in list_themes():
        theme_static = THEMES_DIR / theme / "static"
        if theme_static.is_dir():
            statics.append(Mount(f"/static/themes/{theme}", StaticFiles(directory=theme_static)))
    from core.rest import PREFIX, build_api_routes

    api = [Mount(PREFIX, routes=build_api_routes(host))]
    return statics + webhook_routes + api + [Mount("/p/{project}", routes=project_routes)] + global_routes


class SecurityHeaders:
    """CSP allowing only our own assets, anti-framing, and hardened cookies."""

    CSP = (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data: blob:; font-src 'self'; connect-src 'self'; object-src 'none'; "
        "frame-ancestors 'none'; base-uri 'self'; form-action 'self'"
    )

    def __init__(self, app, secure_cookies: bool = False):
        self.app = app
        self.secure_cookies = secure_cookies

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        secure = self.secure_cookies or scope.get("scheme") == "https"

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                headers = []
                for key, value in message.get("headers", []):
                    if key == b"set-cookie":
                        lower = value.lower()
                        if b"httponly" not in lower:
                            value += b"; HttpOnly"
                        if secure and b"secure" not in lower:
                            value += b"; Secure"
                    headers.append((key, value))
                names = {k for k, _ in headers}
                for key, value in (
                    (b"content-security-policy", self.CSP.encode()),
                    (b"x-frame-options", b"DENY"),
                    (b"referrer-policy", b"same-origin"),
                    (b"x-content-type-options", b"nosniff"),
                ):
                    if key not in names:
                        headers.append((key, value))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


class DropNulCharacters:
    """Drop NUL characters (U+0000) from query strings and urlencoded form bodies before any view.

    PostgreSQL text cannot hold them (a pasted NUL answered 500 there, and SQLite stored it),
    and no form field or filter needs one. Multipart bodies (uploads) pass untouched: file
    bytes may contain NUL.
    """

    def __init__(self, app):
        self.app = app

    @staticmethod
    def _clean(data: bytes) -> bytes:
        return data.replace(b"%00", b"").replace(b"\x00", b"")

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        query = scope.get("query_string", b"")
        if b"%00" in query or b"\x00" in query:
            scope = {**scope, "query_string": self._clean(query)}
        content_type = dict(scope.get("headers") or []).get(b"content-type", b"")
        if not content_type.startswith(b"application/x-www-form-urlencoded"):
            return await self.app(scope, receive, send)

        async def cleaned():
            message = await receive()
            if message["type"] == "http.request" and message.get("body"):
                message = {**message, "body": self._clean(message["body"])}
            return message

        await self.app(scope, cleaned, send)


async def _error_page(request: Request, status: int, message: str) -> Response:
    from core.templating import render
    from core.web import identify

    if request.url.path.startswith("/api/"):
        from core.rest import error_response

        return error_response(status, message)
    if request.url.path.startswith(("/static/", "/hooks/")):
        return PlainTextResponse(message, status_code=status)
    try:
        await identify(request)
        return await render(request, "core/error.html", {"status": status, "message": message}, status_code=status)
    except Exception:  # the error page must never itself fail
        log.exception("error page failed")
        return HTMLResponse(f"<h1>{status}</h1>", status_code=status)


async def _http_error(request: Request, exc: HTTPException) -> Response:
    messages = {
        404: i18n.gettext("Not found. The page or record does not exist, or you have no access to it."),
        403: i18n.gettext("You do not have permission to do this."),
        405: i18n.gettext("This action is not allowed here."),
    }
    if exc.status_code in (401, 304) or exc.status_code < 400:
        return Response(status_code=exc.status_code, headers=exc.headers)
    return await _error_page(request, exc.status_code, messages.get(exc.status_code, str(exc.detail)))


async def _out_of_scope(request: Request, exc: Exception) -> Response:
    return await _http_error(request, HTTPException(404))


async def _invalid_value(request: Request, exc: Exception) -> Response:
    """A value the model refuses that the view did not check first (say, a 20,000-character unit
    code used as a search key): a clear 422 instead of a 500. Views should still check their
    input themselves and show the message next to the field."""
    log.warning("unchecked input refused by the model on %s: %s", request.url.path, str(exc)[:200])
    return await _error_page(request, 422, i18n.gettext(
        "Some of what you entered is too long or not in the expected form. Go back, correct it and try again."
    ))


async def _server_error(request: Request, exc: Exception) -> Response:
    if db.unavailable(exc):
        return await _database_unavailable(request, exc)
    log.exception("unhandled error on %s", request.url.path, exc_info=exc)
    return await _error_page(request, 500, i18n.gettext("Something went wrong. The error was logged; please try again."))


# Seconds a browser or machine is asked to wait before trying again while the database is away.
RETRY_AFTER_SECONDS = 30


async def _database_unavailable(request: Request, exc: Exception) -> Response:
    """503 while the database cannot be reached (restart, failover): a clear page at once, no hang, no trace.

    The page is drawn without the session (that needs the database): the language
    comes from the cookie set at login. The connection pool reconnects by itself,
    so the same process serves normally again once the server is back.
    """
    if not db.unavailable(exc):
        return await _server_error(request, exc)
    from core.templating import render
    from core.web import ctx

    log.warning("database unavailable on %s %s: %s: %s", request.method, request.url.path, type(exc).__name__, exc)
    settings = request.app.state.settings
    i18n.set_locale(request.cookies.get("courtyard_locale", settings["i18n"]["default_locale"]))
    message = i18n.gettext(
        "The database cannot be reached at the moment, so nothing was saved. "
        "Please try again in a minute; if this goes on, tell your IT administrator."
    )
    headers = {"Retry-After": str(RETRY_AFTER_SECONDS)}
    if request.url.path.startswith("/api/"):
        from core.rest import error_response

        return error_response(503, message, headers=headers)
    if request.url.path.startswith(("/static/", "/hooks/", "/events")):
        return PlainTextResponse(message, status_code=503, headers=headers)
    context = ctx(request)
    context.principal = context.session = context.project = None
    try:
        return await render(request, "core/error.html", {"status": 503, "message": message}, status_code=503, headers=headers)
    except Exception:  # the error page must never itself fail
        log.exception("error page failed")
        return HTMLResponse(f"<h1>503</h1><p id=\"error-message\">{message}</p>", status_code=503, headers=headers)


def _database_error_handlers() -> dict[Any, Any]:
    """Handled before Starlette's catch-all, which would also log a full traceback for every request."""
    from tortoise.exceptions import DBConnectionError

    types: list[Any] = [ConnectionError, TimeoutError, DBConnectionError]
    with contextlib.suppress(ImportError):
        import asyncpg

        types += [asyncpg.PostgresConnectionError, asyncpg.CannotConnectNowError, asyncpg.AdminShutdownError,
                  asyncpg.CrashShutdownError, asyncpg.TooManyConnectionsError, asyncpg.InterfaceError]
    return dict.fromkeys(types, _database_unavailable)


def create_app(
    settings: settings_module.Settings | None = None,
    host: PluginHost | None = None,
    *,
    run_jobs: bool | None = None,
) -> Starlette:
    settings = settings_module.use(settings or settings_module.current())
    host = use_host(host or PluginHost.discover(extra_modules=settings.get("plugins.extra", [])))
    host.apply_settings(settings)
    i18n.set_default_locale(settings["i18n"]["default_locale"])

    template_dirs = [path for _, path in _plugin_dirs(host, "register_template_dirs", "templates")]
    templates = Templates(template_dirs)
    if run_jobs is None:
        run_jobs = settings["server"]["embedded_worker"]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        i18n.load_plugin_catalogs(host.plugins)
        app.state.db_config = await db.init(host, settings.database_url)
        from core.shell import sync_permissions

        await sync_permissions(host)
        from core import realtime

        await realtime.start(settings)
        await host.call("startup", contain=False, app=app)
        worker = None
        if run_jobs:
            from core import jobs

            worker = jobs.start_embedded(app)
        try:
            yield
        finally:
            if worker is not None:
                await worker.stop()
            await realtime.stop()
            await db.close()

    app = Starlette(
        routes=build_routes(host),
        lifespan=lifespan,
        exception_handlers={
            HTTPException: _http_error,
            OutOfScope: _out_of_scope,
            ValidationError: _invalid_value,
            **_database_error_handlers(),
            Exception: _server_error,
        },
    )
    app.state.settings = settings
    app.state.host = host
    app.state.directory = Directory()
    app.state.templates = templates

    def skip_csrf(scope: dict[str, Any]) -> bool:
        return scope["path"].startswith(CSRF_EXEMPT_PREFIXES)

    protected = asgi_csrf(
        app,
        signing_secret=settings["security"]["secret_key"],
        skip_if_scope=skip_csrf,
        always_protect={"/login", "/logout", "/lang"},
        cookie_secure=settings["security"]["secure_cookies"],
        cookie_samesite="Lax",
    )
    # Plain upload forms: asgi-csrf cannot read multipart bodies itself (see core/csrf_multipart.py).
    protected = MultipartCsrfToken(protected, skip_if_scope=skip_csrf)
    wrapped = SecurityHeaders(DropNulCharacters(protected), secure_cookies=settings["security"]["secure_cookies"])
    # Keep attribute access (app.state, app.router) working on the outer object for tests and run.py.
    wrapped.state = app.state  # type: ignore[attr-defined]
    wrapped.router = app.router  # type: ignore[attr-defined]
    wrapped.starlette = app  # type: ignore[attr-defined]
    return wrapped  # type: ignore[return-value]
