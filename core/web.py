"""Routes and the request pipeline every page goes through.

Plugins build routes with `route(...)`, declaring what the route needs
instead of checking it by hand:

    route("/orders/{id:int}", order_detail, permission="hotline.view", model="hotline.WorkOrder")

Before the view runs, `_guard` (one place, for every route of every plugin):
loads the session and user, resolves the project in the URL (404 unless the
user belongs to it), answers 404 when the route's plugin is disabled for the
project, sets the data scope, checks the permission, loads the declared
record within the scope (404 otherwise, never 403: another estate's ids do
not exist for you), and sets the language.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Awaitable, Callable
from urllib.parse import quote

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route
from tortoise.exceptions import DoesNotExist

from core import auth, i18n
from core.directory import Directory
from core.models import Project
from core.scope import NOTHING, OutOfScope, Scope, set_scope, use_scope

log = logging.getLogger("courtyard.web")

View = Callable[[Request], Awaitable[Response]]

# Where a user whose password an admin has reset is sent until they pick their own.
PASSWORD_CHANGE_PATH = "/account/password"


@dataclass
class RouteInfo:
    """What a route declares; `plugin` and `in_project` are filled in when core mounts it."""

    permission: str | None = None
    model: str | None = None
    id_param: str = "id"
    public: bool = False
    webhook: bool = False
    plugin: str = ""
    in_project: bool = False


def route(
    path: str,
    endpoint: View,
    *,
    methods: list[str] | tuple[str, ...] = ("GET",),
    name: str | None = None,
    permission: str | None = None,
    model: str | None = None,
    id_param: str = "id",
    public: bool = False,
    webhook: bool = False,
) -> Route:
    """A route whose access rules core enforces.

    permission: code the user needs in the route's project (or anywhere, for
        routes outside a project).
    model: "app.Model" of the record named by the path parameter `id_param`;
        it is loaded within the user's scope into `request.state.record`.
    public: no login needed (signed links); data scope is empty.
    webhook: a machine endpoint under /hooks/<plugin>/ (public, no CSRF check).
    """
    info = RouteInfo(
        permission=permission, model=model, id_param=id_param, public=public or webhook, webhook=webhook
    )

    async def guarded(request: Request) -> Response:
        # Scope and language are restored afterwards: in-process callers (tests,
        # ASGI transports without a task per request) must not inherit them.
        with use_scope(NOTHING), i18n.keep_locale():
            return await _guard(request, endpoint, info)

    guarded.__name__ = getattr(endpoint, "__name__", "view")
    guarded.__doc__ = endpoint.__doc__
    r = Route(path, guarded, methods=list(methods), name=name)
    r.courtyard = info  # type: ignore[attr-defined]
    return r


@dataclass
class RequestContext:
    """Per-request facts set by the guard, available as `request.state.ctx`."""

    principal: auth.Principal | None = None
    session: auth.Session | None = None
    project: Project | None = None
    modules: set[str] = field(default_factory=set)
    project_ids: list[int] = field(default_factory=list)
    route: RouteInfo | None = None

    @property
    def user(self):
        return self.principal


def ctx(request: Request) -> RequestContext:
    context = getattr(request.state, "ctx", None)
    if context is None:
        context = RequestContext()
        request.state.ctx = context
    return context


async def enabled_modules(project: Project, host, directory: Directory | None = None) -> set[str]:
    """The modules on for the estate: its own switches, and every module that is not per-estate."""
    rows = await (directory or Directory()).modules(project.id)
    return rows | {p.name for p in host.plugins if not p.manifest.per_project}


def _settings(request: Request):
    return request.app.state.settings


async def identify(request: Request) -> RequestContext:
    """Load session, user and language (also used by error pages)."""
    context = ctx(request)
    if context.principal is not None:
        return context
    settings = _settings(request)
    sec = settings["security"]
    token = request.cookies.get(auth.SESSION_COOKIE)
    session = await auth.load_session(
        token,
        idle=timedelta(minutes=sec["session_idle_minutes"]),
        absolute=timedelta(hours=sec["session_absolute_hours"]),
    )
    if session is not None:
        context.session = session
        directory: Directory = request.app.state.directory
        directory.check(session.access_stamp)
        context.principal = await auth.load_principal(session.user, directory)
        i18n.set_locale(session.user.locale)
    else:
        i18n.set_locale(request.cookies.get("courtyard_locale", settings["i18n"]["default_locale"]))
    return context


def _login_redirect(request: Request) -> Response:
    target = "/login?next=" + quote(request.url.path + (f"?{request.url.query}" if request.url.query else ""))
    if request.headers.get("hx-request"):
        return Response(status_code=401, headers={"HX-Redirect": target})
    return RedirectResponse(target, status_code=303)


def _password_change_redirect(request: Request) -> Response:
    target = PASSWORD_CHANGE_PATH + "?next=" + quote(request.url.path)
    if request.headers.get("hx-request"):
        return Response(status_code=401, headers={"HX-Redirect": target})
    return RedirectResponse(target, status_code=303)


async def _guard(request: Request, endpoint: View, info: RouteInfo) -> Response:
    context = ctx(request)
    context.route = info
    await identify(request)
    if info.public:
        return await endpoint(request)
    principal = context.principal
    if principal is None:
        return _login_redirect(request)
    if principal.user.must_change_password and request.url.path != PASSWORD_CHANGE_PATH:
        return _password_change_redirect(request)

    host = request.app.state.host
    if info.in_project:
        code = request.path_params.get("project") or ""
        if len(code) > Project._meta.fields_map["code"].max_length:  # longer than any code: no such estate
            raise HTTPException(404)
        project = await principal.directory.project(code)
        if project is None or not principal.member_of(project.id):
            raise HTTPException(404)
        context.project = project
        context.modules = await enabled_modules(project, host, principal.directory)
        if info.plugin not in context.modules:
            raise HTTPException(404)
        context.project_ids = [project.id]
    else:
        context.project_ids = await principal.project_ids()
    set_scope(Scope.of(context.project_ids))

    if info.permission and not principal.can(info.permission, context.project.id if context.project else None):
        raise HTTPException(403)

    if info.model:
        from core.db import model_by_label

        model = model_by_label(info.model)
        try:
            request.state.record = await model.get(**{"id": request.path_params[info.id_param]})
        except (DoesNotExist, OutOfScope, ValueError, KeyError):
            raise HTTPException(404) from None
    return await endpoint(request)


# Responses helpers --------------------------------------------------------


def toast(response: Response, message: str, level: str = "success", request: Request | None = None) -> Response:
    """Show a toast: through HX-Trigger (htmx swaps), or a one-shot cookie for the next full page."""
    payload = {"level": level, "message": str(message)}
    if request is None or request.headers.get("hx-request"):
        response.headers["HX-Trigger"] = json.dumps({"showToast": payload}, ensure_ascii=True)
    else:
        response.set_cookie("courtyard_toast", quote(json.dumps(payload)), max_age=30, httponly=True, samesite="lax")
    return response


def redirect(request: Request, url: str, message: str | None = None, level: str = "success") -> Response:
    """Redirect after a successful POST (htmx gets HX-Redirect, the browser a 303)."""
    if request.headers.get("hx-request"):
        response: Response = Response(status_code=204, headers={"HX-Redirect": url})
    else:
        response = RedirectResponse(url, status_code=303)
    if message:
        payload = {"level": level, "message": str(message)}
        response.set_cookie("courtyard_toast", quote(json.dumps(payload)), max_age=30, httponly=True, samesite="lax")
    return response


def project_url(request: Request, path: str = "") -> str:
    project = ctx(request).project
    return f"/p/{project.code}/{path.lstrip('/')}" if project else "/"


def plugin_url(request: Request, plugin: str, path: str = "") -> str:
    base = project_url(request)
    if plugin == "core":
        return base + path.lstrip("/")
    return f"{base}{plugin}/{path.lstrip('/')}"


async def form_data(request: Request) -> dict[str, Any]:
    """Form fields as a dict of strings (multi-valued fields keep the last value)."""
    form = await request.form()
    return {key: value for key, value in form.multi_items() if key != "csrftoken"}


def errors_for(errors: dict | None, form: str, forms_on_page) -> dict:
    """The errors to show after `form`, one of a page's several forms, was refused.

    The view names the submitted form and the forms the page offers in the record's current state
    (`forms_on_page`, a set the template shows exactly); the template gives the errors and values to that
    form only (`errors if form == "note" else {}`), so another form with a field of the same name stays clean.
    A form the page no longer offers (a page left open while someone else moved the record on) has its
    messages go to `__all__`, the page's alert, so the user still reads why."""
    if not errors or form in forms_on_page:
        return errors or {}
    return {"__all__": " ".join(dict.fromkeys(str(message) for message in errors.values()))}
