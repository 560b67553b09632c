"""Core pages: login, language, home, project dashboard, modules."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from core import auth, i18n
from core.i18n import gettext as _
from core.models import Project, User
from core.scope import unscoped
from core.shell import ModuleError, dashboard_tiles, projects_for, set_module
from core.templating import render
from core.web import ctx, form_data, identify, redirect, toast


def _safe_next(target: str | None) -> str:
    # Only local paths: never redirect to another site after login.
    if target and target.startswith("/") and not target.startswith("//"):
        return target
    return "/"


def client_ip(request: Request) -> str:
    return request.client.host if request.client else ""


async def login_page(request: Request) -> Response:
    context = await identify(request)
    if context.principal is not None:
        return RedirectResponse(_safe_next(request.query_params.get("next")), status_code=303)
    return await render(request, "core/login.html", {"next": request.query_params.get("next", "/")})


async def login_submit(request: Request) -> Response:
    form = await form_data(request)
    username = form.get("username", "").strip()
    password = form.get("password", "")
    target = _safe_next(form.get("next"))
    with unscoped():
        user = await User.get_or_none(username=username, is_active=True)
    if user is None:
        auth.burn_time_verifying(password)
    if user is None or not auth.verify_password(user.password_hash, password):
        return await render(
            request,
            "core/login.html",
            {"error": _("Wrong username or password."), "next": target, "username": username},
            status_code=400,
        )
    old = request.cookies.get(auth.SESSION_COOKIE)
    await auth.close_session(old)  # a new session id at every login
    token = await auth.open_session(user, client_ip(request))
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(auth.SESSION_COOKIE, token, httponly=True, samesite="lax", path="/")
    response.set_cookie("courtyard_locale", user.locale, samesite="lax", path="/")
    return response


async def logout(request: Request) -> Response:
    await auth.close_session(request.cookies.get(auth.SESSION_COOKIE))
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(auth.SESSION_COOKIE, path="/")
    return response


async def set_language(request: Request) -> Response:
    form = await form_data(request)
    code = form.get("locale", "")
    if code not in i18n.LOCALES:
        code = i18n.DEFAULT_LOCALE
    context = ctx(request)
    if context.principal is not None:
        with unscoped():
            await User.filter(id=context.principal.id).update(locale=code)
    response = RedirectResponse(_safe_next(form.get("next")), status_code=303)
    response.set_cookie("courtyard_locale", code, samesite="lax", path="/", max_age=365 * 86400)
    return response


async def home(request: Request) -> Response:
    projects = await projects_for(ctx(request).principal)
    if len(projects) == 1:
        return RedirectResponse(f"/p/{projects[0].code}/", status_code=303)
    return await render(request, "core/home.html", {"projects": projects})


async def dashboard(request: Request) -> Response:
    return await render(request, "core/dashboard.html", {"tiles": await dashboard_tiles(request)})


async def modules_page(request: Request) -> Response:
    context = ctx(request)
    host = request.app.state.host
    rows = [
        {
            "name": p.name,
            "label": p.manifest.label,
            "description": p.manifest.description,
            "version": p.manifest.version,
            "depends": p.manifest.depends,
            "enabled": p.name in context.modules,
        }
        for p in host.toggleable()
    ]
    return await render(request, "core/modules.html", {"modules": rows}, block="modules")


async def module_toggle(request: Request) -> Response:
    context = ctx(request)
    form = await form_data(request)
    name = request.path_params["name"]
    enable = form.get("enabled") == "1"
    try:
        changed = await set_module(request.app.state.host, context.project, name, enable)
    except ModuleError as exc:
        response = await modules_page(request)
        return toast(response, str(exc), "error")
    from core.access import record

    for item in changed:
        await record(request, "module.enabled" if enable else "module.disabled", item, project_id=context.project.id)
    context.modules = {m for m in context.modules if m not in changed} | (set(changed) if enable else set())
    message = (
        _("Enabled: %(names)s", names=", ".join(changed)) if enable else _("Disabled: %(names)s", names=", ".join(changed))
    ) if changed else _("Nothing changed.")
    if not request.headers.get("hx-request"):
        return redirect(request, f"/p/{context.project.code}/modules", message)
    return toast(await modules_page(request), message)
