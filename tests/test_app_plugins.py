"""An in-test plugin gets its route, navigation, tile; modules switch per estate at once."""

import httpx
import pytest

from core.testing import make_project, make_user

HELLO = "tests.sample_plugins.hello"


@pytest.fixture
def plugin_modules():
    return [HELLO]


@pytest.fixture
async def estates(app, host):
    east = await make_project("EAST", host=host)
    west = await make_project("WEST", host=host)
    await make_user("east_agent", "agent", east)
    await make_user("east_admin", "admin", east)
    await make_user("east_readonly", "readonly", east)
    return east, west


async def test_plugin_route_navigation_and_tile(client, estates):
    await client.login("east_agent")
    page = await client.get("/p/EAST/hello/")
    assert page.status_code == 200 and "hello from EAST" in page.text
    dashboard = await client.get("/p/EAST/")
    assert dashboard.status_code == 200
    assert 'href="/p/EAST/hello/"' in dashboard.text and "Hello nav" in dashboard.text
    assert "Hello tile" in dashboard.text and ">42<" in dashboard.text


async def test_plugin_permission_gates_its_route(client, estates):
    await client.login("east_readonly")
    assert (await client.get("/p/EAST/hello/")).status_code == 403
    dashboard = await client.get("/p/EAST/")
    assert "Hello nav" not in dashboard.text


async def test_other_estate_answers_404(client, estates):
    await client.login("east_agent")
    assert (await client.get("/p/WEST/hello/")).status_code == 404
    assert (await client.get("/p/WEST/")).status_code == 404
    assert (await client.get("/p/NOPE/")).status_code == 404


async def test_anonymous_is_sent_to_login(client, estates):
    response = await client.get("/p/EAST/hello/")
    assert response.status_code == 303 and response.headers["location"].startswith("/login?next=/p/EAST/hello/")


async def test_module_toggle_applies_in_another_process_without_restart(client, estates, live_server):
    await client.login("east_admin")
    other = httpx.AsyncClient(base_url=live_server.url, cookies=dict(client.cookies.items()))
    try:
        assert (await other.get("/p/EAST/hello/")).status_code == 200
        response = await client.form("/p/EAST/modules/hello", {"enabled": "0"})
        assert response.status_code == 303
        # The other app process sees it at once: pages 404, nav and tile gone.
        assert (await other.get("/p/EAST/hello/")).status_code == 404
        dashboard = await other.get("/p/EAST/")
        assert "Hello nav" not in dashboard.text and "Hello tile" not in dashboard.text
        # The other estate is untouched.
        await client.form("/p/EAST/modules/hello", {"enabled": "1"})
        assert (await other.get("/p/EAST/hello/")).status_code == 200
    finally:
        await other.aclose()


async def test_access_changed_outside_the_app_holds_from_the_next_request(client, estates):
    """Estates, modules and roles are kept per process; any write to them, by whatever means, ends that."""
    from tortoise import connections

    from core.models import Membership, Project, Role
    from core.scope import unscoped

    east, _west = estates
    await client.login("east_agent")
    assert (await client.get("/p/EAST/hello/")).status_code == 200
    assert (await client.get("/p/EAST/hello/")).status_code == 200  # now served from what the process keeps

    # A permission taken from the role (say by an SQL script of the IT department): 403 at once.
    agent = await Role.get(code="agent")
    kept = list(agent.permissions)
    await connections.get("default").execute_query(
        "UPDATE core_role SET permissions = '[]' WHERE id = " + str(agent.id)
    )
    assert (await client.get("/p/EAST/hello/")).status_code == 403
    await Role.filter(id=agent.id).update(permissions=kept)
    assert (await client.get("/p/EAST/hello/")).status_code == 200

    # The membership removed: the estate is gone for the user.
    with unscoped():
        membership = await Membership.get(user__username="east_agent", project_id=east.id)
        await Membership.filter(id=membership.id).delete()
    assert (await client.get("/p/EAST/hello/")).status_code == 404
    await Membership.create(user_id=membership.user_id, project_id=east.id, role_id=membership.role_id)
    assert (await client.get("/p/EAST/hello/")).status_code == 200

    # The estate closed: 404, and gone from the estate list.
    with unscoped():
        await Project.filter(id=east.id).update(is_active=False)
    assert (await client.get("/p/EAST/")).status_code == 404


async def test_estates_kept_by_the_process_are_handed_out_as_copies(estates):
    from core.directory import Directory

    directory = Directory()
    directory.check(1)
    east, west = estates
    [given] = await directory.active_projects(only={east.id})
    given.name = "changed by a view"
    given.calendar["holidays"] = ["2026-10-01"]
    [again] = await directory.active_projects(only={east.id})
    assert again.name == east.name and "holidays" not in again.calendar
    assert (await directory.project(east.code)).calendar == again.calendar
    assert {p.code for p in await directory.active_projects()} >= {east.code, west.code}
