"""Return visits: a plan makes a call list spread over the estate's callers, calls update the customer."""

from __future__ import annotations

import re
from datetime import date

import pytest

from core.api import CustomerUnit, create_customer, unscoped
from core.testing import make_project, make_units, make_user
from plugins.activities.models import Visit, VisitPlan, VisitRound, VisitStatus

pytestmark = pytest.mark.frozen_time("2026-05-04T09:00+08:00")


@pytest.fixture
async def estate(app, host, frozen_time, client):
    client.cookies.set("courtyard_locale", "en")  # the assertions read the English source texts
    east = await make_project("EAST", host=host)
    west = await make_project("WEST", host=host)
    await make_user("mgr", "manager", east, locale="en")
    await make_user("boss", "admin", east, locale="en")
    await make_user("amy", "agent", east, locale="en")
    await make_user("bob", "agent", east, locale="en")
    await make_user("west_agent", "agent", west, locale="en")
    units = await make_units(east, 5)
    with unscoped():
        for i, unit in enumerate(units[:4]):  # the fifth unit is empty: nobody to call
            customer = await create_customer(east, f"业主{i}", [f"1380013810{i}"])
            await CustomerUnit.create(project=east, customer=customer, unit=unit, relation="owner")
    return east, west, units


async def test_plan_generates_a_call_list_round_robin_and_calls_complete_it(client, estate, run_job, frozen_time, app):
    east, _west, units = estate
    await client.login("mgr")
    bad = await client.form("/p/EAST/activities/plans/new", {"name": "", "interval_months": "0", "next_run_on": "soon"})
    assert bad.status_code == 422 and "Enter a date as YYYY-MM-DD." in bad.text
    created = await client.form("/p/EAST/activities/plans/new", {
        "name": "半年回访", "interval_months": "6", "next_run_on": "2026-05-04", "days_to_complete": "30",
        "script": "对物业服务是否满意?", "is_active": "1",
    })
    assert created.status_code == 303
    with unscoped():
        plan = await VisitPlan.get(name="半年回访")

    await run_job("activities.visit_lists", east)
    frozen_time.tick(minutes=1)
    await run_job("activities.visit_lists", east)  # the same day again: no second list
    with unscoped():
        rounds = await VisitRound.filter(plan_id=plan.id)
        assert len(rounds) == 1 and rounds[0].total == 4 and rounds[0].due_on == date(2026, 6, 3)
        await plan.refresh_from_db()
        assert plan.next_run_on == date(2026, 11, 4)
        calls = await Visit.filter(round_id=rounds[0].id).select_related("agent").order_by("id")
    # Spread over the estate's callers (the manager makes calls too), one household each in turn.
    per_caller = {}
    for call in calls:
        per_caller[call.agent.username] = per_caller.get(call.agent.username, 0) + 1
    assert sum(per_caller.values()) == 4 and max(per_caller.values()) - min(per_caller.values()) <= 1
    assert set(per_caller) <= {"mgr", "boss", "amy", "bob"} and len(per_caller) == 4

    agent = client.__class__(transport=client._transport, base_url="http://testserver")
    async with agent:
        await agent.login("amy")
        mine = await agent.get(f"/p/EAST/activities/visits?round={rounds[0].id}")
        assert mine.status_code == 200 and "1-1-101" in mine.text
        first = calls[0]
        missing = await agent.form(f"/p/EAST/activities/visits/{first.id}", {"outcome": "suggestion", "said": ""})
        assert missing.status_code == 422 and "Write down what the customer said." in missing.text
        no_answer = await agent.form(f"/p/EAST/activities/visits/{first.id}", {"outcome": "no_answer"})
        assert no_answer.status_code == 303
        with unscoped():
            assert (await Visit.get(id=first.id)).status == VisitStatus.PENDING  # try again later
        done = await agent.form(f"/p/EAST/activities/visits/{first.id}", {
            "outcome": "suggestion", "said": "希望增加儿童游乐设施", "channel": "wechat",
        })
        assert done.status_code == 303
        again = await agent.form(f"/p/EAST/activities/visits/{first.id}", {"outcome": "satisfied", "said": "好"})
        assert again.status_code == 422 and "already been recorded" in again.text
        with unscoped():
            visit = await Visit.get(id=first.id).select_related("customer")
        assert visit.status == VisitStatus.DONE and visit.attempts == 2
        assert "希望增加儿童游乐设施" in visit.customer.note and visit.customer.preferred_channel == "wechat"
        history = await agent.get(f"/p/EAST/activities/visits/{first.id}")  # shows the customer's timeline
        assert "Return visit: Made a suggestion. 希望增加儿童游乐设施" in history.text

        for call in calls[1:]:
            response = await agent.form(f"/p/EAST/activities/visits/{call.id}", {"outcome": "satisfied", "said": "满意"})
            assert response.status_code == 303
    page = await client.get(f"/p/EAST/activities/plans/{plan.id}")
    assert "4 / 4" in page.text
    dashboard = await client.get("/p/EAST/")
    assert "Return-visit coverage (6 months)" in dashboard.text and "4 of 4 households reached" in dashboard.text


async def test_follow_up_is_offered_only_with_the_module_and_sent_as_an_event(client, estate, monkeypatch):
    east, _west, units = estate
    from core import events
    from plugins.activities import visits
    from plugins.activities.visits import generate_round

    seen = []

    async def emit(name, project_id, actor_id=None, **data):
        seen.append((name, project_id, data))
        return await events.emit(name, project_id, actor_id, **data)

    monkeypatch.setattr(visits, "emit", emit)

    with unscoped():
        plan = await VisitPlan.create(project=east, name="回访", next_run_on=date(2026, 5, 4))
        await generate_round(plan)
        call = await Visit.filter(round__plan_id=plan.id).first()
    await client.login("boss")
    page = await client.get(f"/p/EAST/activities/visits/{call.id}")
    assert "Open a work order" in page.text  # the hotline is enabled in this estate
    unreached = await client.form(f"/p/EAST/activities/visits/{call.id}", {"outcome": "declined", "follow_up": "work_order"})
    assert unreached.status_code == 422
    response = await client.form(f"/p/EAST/activities/visits/{call.id}", {
        "outcome": "problem", "said": "厨房漏水", "follow_up": "work_order",
    })
    assert response.status_code == 303
    assert [(name, pid, data["follow_up"]) for name, pid, data in seen] == [
        ("activities.return_visit_recorded", east.id, "work_order")
    ]
    assert seen[0][2]["said"] == "厨房漏水" and seen[0][2]["customer_id"] == call.customer_id

    # Without the hotline, no work order can be asked for.
    await client.form("/p/EAST/modules/hotline", {"enabled": "0"})
    with unscoped():
        other = await Visit.filter(round__plan_id=plan.id, status="pending").first()
    page = await client.get(f"/p/EAST/activities/visits/{other.id}")
    assert "Open a work order" not in page.text
    refused = await client.form(f"/p/EAST/activities/visits/{other.id}", {
        "outcome": "problem", "said": "门禁坏了", "follow_up": "work_order",
    })
    assert refused.status_code == 422 and len(seen) == 1


async def test_other_estate_calls_are_404(client, estate):
    east, _west, _units = estate
    from plugins.activities.visits import generate_round

    with unscoped():
        plan = await VisitPlan.create(project=east, name="回访", next_run_on=date(2026, 5, 4))
        await generate_round(plan)
        call = await Visit.filter(round__plan_id=plan.id).first()
    await client.login("west_agent")
    assert (await client.get(f"/p/WEST/activities/visits/{call.id}")).status_code == 404
    assert (await client.get(f"/p/WEST/activities/plans/{plan.id}")).status_code == 404


async def test_a_plan_run_unscoped_calls_only_its_own_estate(client, estate):
    """Jobs, the CLI and the demo loader generate call lists outside any request's scope."""
    east, west, units = estate
    from plugins.activities.visits import generate_round

    west_units = await make_units(west, 2, building_code="9")
    with unscoped():
        for i, unit in enumerate(west_units):
            customer = await create_customer(west, f"西区业主{i}", [f"1390013920{i}"])
            await CustomerUnit.create(project=west, customer=customer, unit=unit, relation="owner")
        plan = await VisitPlan.create(project=east, name="回访", next_run_on=date(2026, 5, 4))
        visit_round = await generate_round(plan)
        called = set(await Visit.filter(round_id=visit_round.id).values_list("unit_id", flat=True))
    assert called == {unit.id for unit in units[:4]} and visit_round.total == 4


async def test_my_calls_link_only_for_the_estates_callers(client, estate, make_client):
    east, _west, _units = estate
    await make_user("hq_admin", "admin")  # head office: may call, but is not one of the estate's callers
    await client.login("hq_admin")
    page = await client.get("/p/EAST/activities/visits")
    assert page.status_code == 200 and "My calls to make" not in page.text
    amy = make_client()
    await amy.login("amy")
    mine = await amy.get("/p/EAST/activities/visits")
    link = re.search(r'href="([^"]*agent=\d+[^"]*)"', mine.text).group(1).replace("&amp;", "&")
    assert (await amy.get(link)).status_code == 200
