"""Admins manage staff accounts, memberships and roles in the browser; everything lands in the access log."""

import re

import pytest

from core.access import AccessEvent
from core.auth import Session
from core.models import Department, Membership, Role, User
from core.scope import unscoped
from core.testing import PASSWORD, make_project, make_user

HELLO = "tests.sample_plugins.hello"
NEW_PASSWORD = "first-day-2468"


@pytest.fixture
def plugin_modules():
    return [HELLO]


@pytest.fixture
async def estates(app, host):
    east = await make_project("EAST", host=host)
    west = await make_project("WEST", host=host)
    await make_user("hq_admin", "admin")  # head office
    await make_user("east_admin", "admin", east)
    await make_user("east_agent", "agent", east)
    await make_user("west_agent", "agent", west)
    return east, west


async def _user(username) -> User:
    with unscoped():
        return await User.get(username=username)


async def _events(action) -> list[AccessEvent]:
    with unscoped():
        return await AccessEvent.filter(action=action).order_by("id")


def _new_user_form(**overrides):
    data = {
        "username": "li_na", "display_name": "李娜", "email": "li.na@example.com", "phone": "138 0013 8000",
        "extension": "8012", "locale": "en", "project": "", "role": "", "department": "",
        "new_password": NEW_PASSWORD, "repeat_password": NEW_PASSWORD,
    }
    data.update(overrides)
    return data


async def test_create_user_then_first_login_forces_a_new_password(client, make_client, estates):
    east, _ = estates
    with unscoped():
        agent = await Role.get(code="agent")
        desk = await Department.create(project=east, name="客服部")
    await client.login("hq_admin")
    form = await client.get("/admin/users/new")
    assert form.status_code == 200 and "All projects — head office" in form.text

    bad = [
        (_new_user_form(username="east_agent", project=str(east.id), role=str(agent.id)), "username"),
        (_new_user_form(email="not-an-email", project=str(east.id), role=str(agent.id)), "email"),
        (_new_user_form(extension="80a", project=str(east.id), role=str(agent.id)), "extension"),
        (_new_user_form(new_password="abc", repeat_password="abc", project=str(east.id), role=str(agent.id)), "new_password"),
        (_new_user_form(role=str(agent.id)), "project"),
        (_new_user_form(project=str(east.id)), "role"),
    ]
    for data, field in bad:
        response = await client.form("/admin/users/new", data)
        assert response.status_code == 422 and f'id="f-{field}-error"' in response.text, field
    with unscoped():
        assert not await User.filter(username="li_na").exists()

    response = await client.form(
        "/admin/users/new", _new_user_form(project=str(east.id), role=str(agent.id), department=str(desk.id))
    )
    assert response.status_code == 303
    user = await _user("li_na")
    assert user.phone == "+8613800138000" and user.must_change_password
    listing = await client.get("/admin/users?q=li")
    assert "li_na" in listing.text and "客服部" in listing.text and "east_agent" not in listing.text

    # At the first login every page leads to the password change until it is done.
    newcomer = make_client()
    login = await newcomer.login("li_na", NEW_PASSWORD)
    assert login.headers["location"].startswith("/account/password")
    other = await newcomer.get("/p/EAST/")
    assert other.status_code == 303 and other.headers["location"].startswith("/account/password")
    page = await newcomer.get(login.headers["location"])
    assert "reset by an administrator" in page.text
    done = await newcomer.form(
        "/account/password",
        {"old_password": NEW_PASSWORD, "new_password": "my-own-pass-1", "repeat_password": "my-own-pass-1", "next": "/"},
    )
    assert done.status_code == 303
    assert (await newcomer.get("/p/EAST/")).status_code == 200
    assert [e.target for e in await _events("user.created")] == ["li_na"]


async def test_edit_user_details_is_logged(client, estates):
    await client.login("hq_admin")
    agent = await _user("east_agent")
    response = await client.form(f"/admin/users/{agent.id}", {"display_name": "", "email": "x@", "locale": "en"})
    assert response.status_code == 422
    assert 'id="f-display_name-error"' in response.text and 'id="f-email-error"' in response.text
    response = await client.form(
        f"/admin/users/{agent.id}",
        {"display_name": "前台 小王", "email": "wang@example.com", "phone": "", "extension": "8003", "locale": "en"},
    )
    assert response.status_code == 303
    agent = await _user("east_agent")
    assert (agent.display_name, agent.extension, agent.locale) == ("前台 小王", "8003", "en")
    [event] = await _events("user.changed")
    assert event.username == "hq_admin" and event.target == "east_agent"
    assert event.detail["changes"]["extension"] == ["", "8003"]
    # Two active agents cannot share a PBX extension.
    west = await _user("west_agent")
    response = await client.form(f"/admin/users/{west.id}", {"display_name": "x", "extension": "8003", "locale": "en"})
    assert response.status_code == 422 and 'id="f-extension-error"' in response.text


async def test_deactivate_and_reactivate(client, make_client, estates):
    agent_client = make_client()
    await agent_client.login("east_agent")
    await client.login("hq_admin")
    agent = await _user("east_agent")

    response = await client.form(f"/admin/users/{agent.id}/active", {"active": "0"})
    assert response.status_code == 303
    assert (await agent_client.get("/p/EAST/")).status_code == 303  # logged out at once
    with unscoped():
        assert not await Session.filter(user_id=agent.id).exists()
    assert (await make_client().form("/login", {"username": "east_agent", "password": PASSWORD})).status_code == 400
    # History keeps the account: still listed (as deactivated) and in the log.
    listing = await client.get("/admin/users?status=inactive")
    assert "east_agent" in listing.text and "Deactivated" in listing.text
    assert "east_agent" not in (await client.get("/admin/users")).text

    await client.form(f"/admin/users/{agent.id}/active", {"active": "1"})
    await agent_client.login("east_agent")
    assert [e.action for e in await _events("user.deactivated")] == ["user.deactivated"]
    assert len(await _events("user.reactivated")) == 1

    # An admin cannot deactivate themselves.
    me = await _user("hq_admin")
    await client.form(f"/admin/users/{me.id}/active", {"active": "0"})
    assert (await _user("hq_admin")).is_active


async def test_admin_password_reset_forces_change(client, make_client, estates):
    agent_client = make_client()
    await agent_client.login("east_agent")
    await client.login("hq_admin")
    agent = await _user("east_agent")
    weak = await client.form(f"/admin/users/{agent.id}/password", {"new_password": "1234", "repeat_password": "1234"})
    assert weak.status_code == 422 and 'id="f-new_password-error"' in weak.text
    response = await client.form(
        f"/admin/users/{agent.id}/password", {"new_password": "temp-pass-777", "repeat_password": "temp-pass-777"}
    )
    assert response.status_code == 303
    assert (await agent_client.get("/p/EAST/")).status_code == 303  # their sessions ended
    login = await agent_client.login("east_agent", "temp-pass-777")
    assert login.headers["location"].startswith("/account/password")
    [event] = await _events("password.reset")
    assert event.username == "hq_admin" and event.target == "east_agent"


async def test_memberships_grant_and_withdraw_access(client, make_client, estates):
    east, west = estates
    agent_client = make_client()
    await agent_client.login("east_agent")
    assert (await agent_client.get("/p/WEST/")).status_code == 404
    await client.login("hq_admin")
    agent = await _user("east_agent")
    with unscoped():
        manager = await Role.get(code="manager")
        foreign_department = await Department.create(project=east, name="工程部")

    wrong = await client.form(
        f"/admin/users/{agent.id}/memberships",
        {"project": str(west.id), "role": str(manager.id), "department": str(foreign_department.id)},
    )
    assert wrong.status_code == 422 and 'id="f-department-error"' in wrong.text
    response = await client.form(f"/admin/users/{agent.id}/memberships", {"project": str(west.id), "role": str(manager.id)})
    assert response.status_code == 303
    assert (await agent_client.get("/p/WEST/")).status_code == 200
    again = await client.form(f"/admin/users/{agent.id}/memberships", {"project": str(west.id), "role": str(manager.id)})
    assert again.status_code == 422 and 'id="f-role-error"' in again.text

    with unscoped():
        membership = await Membership.get(user_id=agent.id, project_id=west.id)
    response = await client.form(f"/admin/users/{agent.id}/memberships/{membership.id}/delete")
    assert response.status_code == 303
    assert (await agent_client.get("/p/WEST/")).status_code == 404
    assert [e.detail["membership"] for e in await _events("membership.added")] == ["WEST / manager"]
    [removed] = await _events("membership.removed")
    assert removed.project_id == west.id and removed.target == "east_agent"


async def test_role_editor_changes_what_members_may_do(client, make_client, estates):
    agent_client = make_client()
    await agent_client.login("east_agent")
    assert (await agent_client.get("/p/EAST/hello/")).status_code == 200
    await client.login("hq_admin")
    with unscoped():
        agent_role = await Role.get(code="agent")
    editor = await client.get(f"/admin/roles/{agent_role.id}")
    # Permissions are grouped by the plugin declaring them.
    assert editor.status_code == 200 and '<h2 id="perm-group-hello">Hello</h2>' in editor.text
    assert re.search(r'value="hello\.view"[^>]*checked', editor.text)

    kept = [p for p in agent_role.permissions if p != "hello.view"]
    response = await client.form(f"/admin/roles/{agent_role.id}", {"name": agent_role.name, "permissions": kept})
    assert response.status_code == 303
    assert (await agent_client.get("/p/EAST/hello/")).status_code == 403
    [event] = await _events("role.changed")
    assert event.detail["revoked"] == ["hello.view"] and event.detail["granted"] == []

    # A custom role granting only the greeting, given to the agent in EAST.
    bad = await client.form("/admin/roles/new", {"code": "Night Shift", "name": "", "permissions": ["hello.view"]})
    assert bad.status_code == 422 and 'id="f-code-error"' in bad.text and 'id="f-name-error"' in bad.text
    response = await client.form("/admin/roles/new", {"code": "night", "name": "夜班", "permissions": ["hello.view", "no.such"]})
    assert response.status_code == 303
    with unscoped():
        night = await Role.get(code="night")
    assert night.permissions == ["hello.view"] and not night.builtin
    east, _ = estates
    agent = await _user("east_agent")
    await client.form(f"/admin/users/{agent.id}/memberships", {"project": str(east.id), "role": str(night.id)})
    assert (await agent_client.get("/p/EAST/hello/")).status_code == 200
    roles = await client.get("/admin/roles")
    assert "夜班" in roles.text


async def test_project_admin_manages_only_their_estate(client, estates):
    east, west = estates
    await client.login("east_admin")
    listing = await client.get("/admin/users")
    assert "east_agent" in listing.text and "west_agent" not in listing.text and "hq_admin" not in listing.text
    west_agent, hq, east_agent = await _user("west_agent"), await _user("hq_admin"), await _user("east_agent")
    with unscoped():
        agent_role = await Role.get(code="agent")
    # Other estates' staff do not exist for them.
    assert (await client.get(f"/admin/users/{west_agent.id}")).status_code == 404
    assert (await client.form(f"/admin/users/{west_agent.id}/password", {"new_password": "x"})).status_code == 404
    # They cannot add memberships elsewhere or at head office.
    for project in (str(west.id), "all"):
        response = await client.form(f"/admin/users/{east_agent.id}/memberships", {"project": project, "role": str(agent_role.id)})
        assert response.status_code == 422 and 'id="f-project-error"' in response.text
    form = await client.get("/admin/users/new")
    assert "All projects — head office" not in form.text and "Estate WEST" not in form.text
    # Someone who also works elsewhere: memberships in EAST only, the account itself is not theirs.
    with unscoped():
        await Membership.create(user=west_agent, project=east, role=agent_role)
    assert (await client.get(f"/admin/users/{west_agent.id}")).status_code == 200
    response = await client.form(f"/admin/users/{west_agent.id}", {"display_name": "taken over", "locale": "en"})
    assert response.status_code == 403
    assert (await client.form(f"/admin/users/{hq.id}/active", {"active": "0"})).status_code == 404
    # Roles are shared by every estate: readable, not editable.
    assert (await client.get(f"/admin/roles/{agent_role.id}")).status_code == 200
    assert (await client.form(f"/admin/roles/{agent_role.id}", {"name": "x"})).status_code == 403
    assert (await client.get("/admin/roles/new")).status_code == 403


async def test_admin_pages_need_the_permission(client, estates):
    await client.login("east_agent")
    for url in ("/admin/users", "/admin/roles", "/admin/access-log", "/admin/users/new"):
        assert (await client.get(url)).status_code == 403, url
    dashboard = await client.get("/p/EAST/")
    assert "/admin/users" not in dashboard.text
    await client.login("hq_admin")
    dashboard = await client.get("/p/EAST/")
    assert 'href="/admin/users"' in dashboard.text and 'href="/admin/access-log"' in dashboard.text


async def test_access_log_lists_and_filters(client, make_client, estates):
    await make_client().form("/login", {"username": "ghost", "password": "nope-1234"})
    await make_client().login("east_agent")
    await client.login("east_admin")
    await client.form("/p/EAST/modules/hello", {"enabled": "0"})
    await client.form("/logout")
    await client.login("hq_admin")

    page = await client.get("/admin/access-log")
    assert page.status_code == 200
    for text in ("Failed login", "ghost", "Logged in", "Logged out", "Module disabled", "hello", "unknown account"):
        assert text in page.text, text
    failed = await client.get("/admin/access-log?action=login.failed")
    assert failed.text.count('data-action="login.failed"') == 1 and 'data-action="login"' not in failed.text
    by_user = await client.get("/admin/access-log?user=east_admin", headers={"HX-Request": "true"})
    assert "<html" not in by_user.text  # only the results for htmx
    assert by_user.text.count("<tr data-action") == 3  # login, module disabled, logout

    # An estate's admin sees their estate's events, not another estate's staff.
    await make_client().login("west_agent")
    await client.login("east_admin")
    mine = await client.get("/admin/access-log?action=login")
    assert "east_agent" in mine.text and "west_agent" not in mine.text
