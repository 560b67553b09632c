"""Core pages: login, language, home, project dashboard, modules."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import quote

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from core import auth, i18n
from core.i18n import gettext as _
from core.models import User
from core.scope import unscoped
from core.shell import ModuleError, dashboard_tiles, projects_for, set_module
from core.templating import render
from core.web import PASSWORD_CHANGE_PATH, ctx, form_data, identify, redirect, toast


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


def _login_failed_message(request: Request) -> str:
    # One text for unknown account, wrong password and lockout: nothing tells which.
    minutes = request.app.state.settings["security"]["lockout_minutes"]
    return _(
        "Login failed. Check the username and password. After several failed attempts, "
        "logging in is paused for %(minutes)s minutes.",
        minutes=minutes,
    )


async def login_submit(request: Request) -> Response:
    from core.access import record

    form = await form_data(request)
    username = form.get("username", "").strip().replace("\x00", "")[:64]
    password = form.get("password", "")
    target = _safe_next(form.get("next"))
    sec = request.app.state.settings["security"]
    keys = auth.throttle_keys(username, client_ip(request))
    limits = {"user": sec["lockout_attempts"], "ip": sec.get("lockout_address_attempts", sec["lockout_attempts"])}
    window = timedelta(minutes=sec["lockout_minutes"])
    with unscoped():
        locked = await auth.locked_keys(keys)
        if not locked:
            # Counted before the password is checked, so simultaneous guesses cannot outrun the limit.
            locked = await auth.claim_attempt(keys, limits, window)
        user = await User.get_or_none(username=username)
        # Hashing takes tens of milliseconds of CPU: in a thread, so a flood of logins does not stall every page.
        if user is None or not user.is_active or locked:
            await run_in_threadpool(auth.burn_time_verifying, password)
            ok = False
        else:
            ok = await run_in_threadpool(auth.verify_password, user.password_hash, password)
        if not ok:
            if locked:
                reason = "locked"
            elif user is None:
                reason = "unknown_account"
            else:
                reason = "wrong_password" if user.is_active else "deactivated"
            await record(request, "login.failed", username=username, user_id=user.id if user else None, reason=reason)
            if not locked:
                for kind in await auth.lock_when_reached(keys, limits, window):
                    await record(request, "login.locked", keys[kind], username=username, user_id=user.id if user else None)
            return await render(
                request,
                "core/login.html",
                {"error": _login_failed_message(request), "next": target, "username": username},
                status_code=400,
            )
        await auth.clear_failures(username)
        await auth.forgive_attempt(keys)
    old = request.cookies.get(auth.SESSION_COOKIE)
    await auth.close_session(old)  # a new session id at every login
    token = await auth.open_session(user, client_ip(request))
    await record(request, "login", username=user.username, user_id=user.id)
    if user.must_change_password:
        target = PASSWORD_CHANGE_PATH + "?next=" + quote(target)
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(auth.SESSION_COOKIE, token, httponly=True, samesite="lax", path="/")
    response.set_cookie("courtyard_locale", user.locale, samesite="lax", path="/")
    return response


async def logout(request: Request) -> Response:
    from core.access import record

    if ctx(request).principal is not None:
        await record(request, "logout")
    await auth.close_session(request.cookies.get(auth.SESSION_COOKIE))
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(auth.SESSION_COOKIE, path="/")
    return response


async def password_page(request: Request) -> Response:
    context = ctx(request)
    return await render(
        request,
        "core/accounts/password.html",
        {"next": _safe_next(request.query_params.get("next")), "forced": context.principal.user.must_change_password},
    )


async def password_submit(request: Request) -> Response:
    """The logged-in user changes their own password (also when an admin reset it)."""
    from core.access import record
    from core.accounts import new_password_errors, set_password

    context = ctx(request)
    form = await form_data(request)
    with unscoped():
        user = await User.get(id=context.principal.id)
    sec = request.app.state.settings["security"]
    keys = {"user": auth.throttle_keys(user.username, "")["user"]}
    limits, window = {"user": sec["lockout_attempts"]}, timedelta(minutes=sec["lockout_minutes"])
    errors: dict[str, str] = {}
    # The old password is guessed no faster here than on the login page.
    if await auth.locked_keys(keys) or await auth.claim_attempt(keys, limits, window):
        errors["old_password"] = _(
            "Too many wrong passwords. Try again in %(minutes)s minutes.", minutes=sec["lockout_minutes"]
        )
    elif not auth.verify_password(user.password_hash, form.get("old_password", "")):
        errors["old_password"] = _("This is not your current password.")
        await auth.lock_when_reached(keys, limits, window)
    else:
        await auth.clear_failures(user.username)
        errors = new_password_errors(form.get("new_password", ""), form.get("repeat_password", ""), user.username)
        if not errors and form.get("new_password") == form.get("old_password"):
            errors["new_password"] = _("Choose a password different from the current one.")
    target = _safe_next(form.get("next"))
    if errors:
        return await render(
            request,
            "core/accounts/password.html",
            {"errors": errors, "next": target, "forced": user.must_change_password},
            status_code=422,
        )
    await set_password(user, form["new_password"])
    # Other browsers logged in as this user are signed out; this one gets a new session id.
    await auth.end_sessions(user.id)
    token = await auth.open_session(user, client_ip(request))
    await record(request, "password.changed", user.username)
    response = redirect(request, target, _("Your password was changed."))
    response.set_cookie(auth.SESSION_COOKIE, token, httponly=True, samesite="lax", path="/")
    return response


async def set_language(request: Request) -> Response:
    form = await form_data(request)
    code = form.get("locale", "")
    if code not in i18n.LOCALES:
        code = i18n.default_locale()
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


async def modules_page(request: Request, extra: dict | None = None) -> Response:
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
    return await render(request, "core/modules.html", {"modules": rows, **(extra or {})}, block="modules")


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
    labels = ", ".join(str(request.app.state.host.by_name[item].manifest.label) for item in changed)  # as the page names them
    message = (
        _("Enabled: %(names)s", names=labels) if enable else _("Disabled: %(names)s", names=labels)
    ) if changed else _("Nothing changed.")
    if not request.headers.get("hx-request"):
        return redirect(request, f"/p/{context.project.code}/modules", message)
    from core.shell import navigation

    # The menu changes with the modules: swap the sidebar too (out of band).
    extra = {"sidebar_oob": True, "nav": await navigation(request)}
    return toast(await modules_page(request, extra), message)
