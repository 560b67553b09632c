"""Logging in and out: sessions, timeouts, lockout, password change, web protections, masking."""

from datetime import timedelta

import pytest
from starlette.requests import Request

from core import auth
from core.access import AccessEvent
from core.auth import LoginThrottle, Session
from core.models import User
from core.scope import unscoped
from core.testing import PASSWORD, make_project, make_user


@pytest.fixture
async def east(app, host):
    project = await make_project("EAST", host=host)
    await make_user("east_agent", "agent", project)
    await make_user("east_manager", "manager", project)
    await make_user("east_readonly", "readonly", project)
    return project


async def _login_error(client, username, password):
    response = await client.form("/login", {"username": username, "password": password})
    return response.status_code, response.text


def _error_text(html: str) -> str:
    start = html.index('<div class="alert alert-error"')
    return html[start:html.index("</div>", start)]


async def _actions() -> list[str]:
    with unscoped():
        return await AccessEvent.all().order_by("id").values_list("action", flat=True)


async def test_session_id_is_new_at_each_login_and_dropped_at_logout(client, make_client, east):
    await client.login("east_agent")
    first = client.cookies.get(auth.SESSION_COOKIE)
    assert (await client.get("/p/EAST/")).status_code == 200

    await client.login("east_agent")
    second = client.cookies.get(auth.SESSION_COOKIE)
    assert second and second != first
    # The id from before the login is worthless now (no session fixation).
    stale = make_client()
    stale.cookies.set(auth.SESSION_COOKIE, first)
    assert (await stale.get("/p/EAST/")).status_code == 303

    response = await client.form("/logout")
    assert response.status_code == 303 and response.headers["location"] == "/login"
    assert auth.SESSION_COOKIE not in client.cookies
    replay = make_client()
    replay.cookies.set(auth.SESSION_COOKIE, second)
    assert (await replay.get("/p/EAST/")).headers["location"].startswith("/login")
    with unscoped():
        assert await Session.all().count() == 0
    assert await _actions() == ["login", "login", "logout"]


async def test_failed_logins_tell_nothing_about_the_account(client, east):
    unknown = await _login_error(client, "nobody", PASSWORD)
    wrong = await _login_error(client, "east_agent", "wrong-password-1")
    assert unknown[0] == wrong[0] == 400
    assert _error_text(unknown[1]) == _error_text(wrong[1])
    with unscoped():
        events = await AccessEvent.filter(action="login.failed").order_by("id")
    assert [e.username for e in events] == ["nobody", "east_agent"]
    assert events[1].user_id is not None and events[0].user_id is None


async def test_account_lockout_engages_and_releases(client, make_client, settings, east):
    settings.data["security"]["lockout_attempts"] = 3
    _, typo = await _login_error(client, "east_agent", "wrong-password-1")
    for _ in range(2):
        await _login_error(client, "east_agent", "wrong-password-1")
    # Locked: even the right password is refused, with the very same answer.
    status, text = await _login_error(client, "east_agent", PASSWORD)
    assert status == 400 and _error_text(text) == _error_text(typo)
    # The account is locked, not the browser: from elsewhere too.
    assert (await _login_error(make_client(), "east_agent", PASSWORD))[0] == 400
    # Another account from the same address is not affected.
    await client.login("east_manager")
    assert "login.locked" in await _actions()

    with unscoped():  # the lockout time passes
        await LoginThrottle.filter(key="user:east_agent").update(locked_until=auth.now() - timedelta(seconds=1))
    await client.login("east_agent")
    assert (await client.get("/p/EAST/")).status_code == 200


async def test_an_address_guessing_many_accounts_is_locked_out(client, make_client, settings, east):
    settings.data["security"]["lockout_address_attempts"] = 4
    for name in ("a1", "a2", "a3", "a4"):
        await _login_error(client, name, "guess-1234")
    # Every login from that address now fails, even a right one...
    assert (await _login_error(make_client(), "east_manager", PASSWORD))[0] == 400
    with unscoped():
        await LoginThrottle.filter(key__startswith="ip:").update(locked_until=auth.now() - timedelta(seconds=1))
    # ...until the lockout time has passed.
    await make_client().login("east_manager")


async def test_idle_and_absolute_timeouts_end_the_session(client, settings, east):
    await client.login("east_agent")
    idle = settings["security"]["session_idle_minutes"]
    with unscoped():
        await Session.all().update(last_seen_at=auth.now() - timedelta(minutes=idle + 1))
    response = await client.get("/p/EAST/")
    assert response.status_code == 303 and response.headers["location"] == "/login?next=/p/EAST/"
    with unscoped():
        assert await Session.all().count() == 0

    await client.login("east_agent")
    hours = settings["security"]["session_absolute_hours"]
    with unscoped():
        # Active a minute ago, but opened longer ago than the absolute limit.
        await Session.all().update(created_at=auth.now() - timedelta(hours=hours, minutes=1))
    assert (await client.get("/p/EAST/")).status_code == 303

    await client.login("east_agent")
    with unscoped():
        await Session.all().update(last_seen_at=auth.now() - timedelta(minutes=idle - 1))
    assert (await client.get("/p/EAST/")).status_code == 200


async def test_change_own_password(client, make_client, east):
    await client.login("east_agent")
    elsewhere = make_client()
    await elsewhere.login("east_agent")
    page = await client.get("/account/password")
    assert page.status_code == 200 and 'name="old_password"' in page.text

    cases = [
        ({"old_password": "not-it-123", "new_password": "fresh-pass-42", "repeat_password": "fresh-pass-42"}, "old_password"),
        ({"old_password": PASSWORD, "new_password": "short1", "repeat_password": "short1"}, "new_password"),
        ({"old_password": PASSWORD, "new_password": "12345678", "repeat_password": "12345678"}, "new_password"),
        ({"old_password": PASSWORD, "new_password": "east_agent-99", "repeat_password": "east_agent-99"}, "new_password"),
        ({"old_password": PASSWORD, "new_password": "fresh-pass-42", "repeat_password": "fresh-pass-43"}, "repeat_password"),
    ]
    for data, field in cases:
        response = await client.form("/account/password", data)
        assert response.status_code == 422, data
        assert f'id="f-{field}-error"' in response.text, data
    with unscoped():
        assert auth.verify_password((await User.get(username="east_agent")).password_hash, PASSWORD)

    response = await client.form(
        "/account/password",
        {"old_password": PASSWORD, "new_password": "fresh-pass-42", "repeat_password": "fresh-pass-42", "next": "/p/EAST/"},
    )
    assert response.status_code == 303 and response.headers["location"] == "/p/EAST/"
    assert (await client.get("/p/EAST/")).status_code == 200
    # The other browser is logged out; the old password no longer works.
    assert (await elsewhere.get("/p/EAST/")).status_code == 303
    assert (await _login_error(make_client(), "east_agent", PASSWORD))[0] == 400
    await make_client().login("east_agent", "fresh-pass-42")
    assert "password.changed" in await _actions()


async def test_deactivated_user_is_logged_out_and_cannot_log_in(client, make_client, east):
    from core.accounts import set_active

    await client.login("east_agent")
    with unscoped():
        user = await User.get(username="east_agent")
    await set_active(user, False)
    assert (await client.get("/p/EAST/")).status_code == 303
    status, text = await _login_error(make_client(), "east_agent", PASSWORD)
    _, unknown = await _login_error(make_client(), "nobody", PASSWORD)
    assert status == 400 and _error_text(text) == _error_text(unknown)
    with unscoped():
        reasons = await AccessEvent.filter(action="login.failed").order_by("id").values_list("detail", flat=True)
    assert [r["reason"] for r in reasons] == ["deactivated", "unknown_account"]  # told to admins only


async def test_post_without_csrf_token_is_refused(client, east):
    assert (await client.post("/login", data={"username": "east_agent", "password": PASSWORD})).status_code == 403
    await client.login("east_agent")
    response = await client.post(
        "/account/password",
        data={"old_password": PASSWORD, "new_password": "fresh-pass-42", "repeat_password": "fresh-pass-42"},
    )
    assert response.status_code == 403
    # htmx sends the token in a header instead of the form.
    response = await client.post(
        "/account/password",
        data={"old_password": "x", "new_password": "y", "repeat_password": "y"},
        headers={"x-csrftoken": client.csrf, "HX-Request": "true"},
    )
    assert response.status_code == 422


async def test_security_headers_and_cookie_flags(client, east):
    page = await client.get("/login")
    csp = page.headers["content-security-policy"]
    directives = dict((part.split(None, 1) + [""])[:2] for part in csp.split(";") if part.strip())
    assert directives["script-src"] == "'self'" and directives["default-src"] == "'self'"
    allowed = {"'self'", "'none'", "'unsafe-inline'", "data:", "blob:"}
    assert all(set(sources.split()) <= allowed for sources in directives.values()), csp
    assert "'unsafe-inline'" not in directives["script-src"]
    assert directives["frame-ancestors"] == "'none'"
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["referrer-policy"] == "same-origin"
    assert page.headers["x-content-type-options"] == "nosniff"

    login = await client.login("east_agent")
    cookies = [v for k, v in login.headers.multi_items() if k == "set-cookie"]
    session = next(c for c in cookies if c.startswith(auth.SESSION_COOKIE + "="))
    assert "httponly" in session.lower() and "samesite=lax" in session.lower()
    assert "secure" not in session.lower()  # plain http in development


async def test_secure_cookies_setting(settings, host):
    import httpx

    from core.app import create_app
    from core.testing import Client

    settings.data["security"]["secure_cookies"] = True
    application = create_app(settings, host, run_jobs=False)
    async with application.router.lifespan_context(application.starlette):
        await make_user("secure_user", "agent", await make_project("SAFE", host=host))
        async with Client(transport=httpx.ASGITransport(app=application), base_url="https://testserver") as client:
            login = await client.login("secure_user")
    cookies = [v for k, v in login.headers.multi_items() if k == "set-cookie"]
    assert cookies and all("; secure" in c.lower() and "httponly" in c.lower() for c in cookies), cookies


async def test_personal_data_masked_unless_permitted(app, east):
    from core.web import ctx

    west = await make_project("WEST", host=app.state.host)
    await make_user("hq_admin", "admin")
    env = app.state.templates.env()
    template = env.from_string("{{ mask_id(v) }} {{ mask_phone(p) }} | {{ mask_id(v, other) }}")

    async def shown_to(username, project):
        request = Request({"type": "http", "method": "GET", "path": "/", "headers": [], "query_string": b""})
        with unscoped():
            ctx(request).principal = await auth.load_principal(await User.get(username=username))
        ctx(request).project = project
        return template.render(request=request, v="310101199001011234", p="+8613800138000", other=west.id)

    # A manager of EAST sees EAST's personal data in full, but not WEST's records.
    assert await shown_to("east_manager", east) == "310101199001011234 138 0013 8000 | 3101**********1234"
    assert await shown_to("east_readonly", east) == "3101**********1234 138****8000 | 3101**********1234"
    # Outside a project only head office sees it.
    assert (await shown_to("east_manager", None)).startswith("3101**********1234 138****8000")
    assert (await shown_to("hq_admin", None)).startswith("310101199001011234 138 0013 8000")
