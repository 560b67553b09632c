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

from core import db, i18n
from core import settings as settings_module
from core.csrf_multipart import MultipartCsrfToken
from core.plugins import PluginHost, use_host
from core.scope import OutOfScope
from core.templating import THEMES_DIR, Templates, list_themes
from core.web import RouteInfo

log = logging.getLogger("courtyard.app")

# Paths that machines post to with their own signatures, not browsers.
CSRF_EXEMPT_PREFIXES = ("/hooks/",)


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
    return statics + webhook_routes + [Mount("/p/{project}", routes=project_routes)] + global_routes


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


async def _error_page(request: Request, status: int, message: str) -> Response:
    from core.templating import render
    from core.web import identify

    if request.url.path.startswith(("/static/", "/hooks/", "/api/")):
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


async def _server_error(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s", request.url.path, exc_info=exc)
    return await _error_page(request, 500, i18n.gettext("Something went wrong. The error was logged; please try again."))


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
    locale_dirs = [p.path / "locale" for p in host.plugins if (p.path / "locale").is_dir()]
    if run_jobs is None:
        run_jobs = settings["server"]["embedded_worker"]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        i18n.load_catalogs(locale_dirs)
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
            Exception: _server_error,
        },
    )
    app.state.settings = settings
    app.state.host = host
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
    wrapped = SecurityHeaders(protected, secure_cookies=settings["security"]["secure_cookies"])
    # Keep attribute access (app.state, app.router) working on the outer object for tests and run.py.
    wrapped.state = app.state  # type: ignore[attr-defined]
    wrapped.router = app.router  # type: ignore[attr-defined]
    wrapped.starlette = app  # type: ignore[attr-defined]
    return wrapped  # type: ignore[return-value]
