"""A return visit that asks for a follow-up opens a hotline work order or a complaint case, once."""

from __future__ import annotations

from datetime import date

import pytest

from core.api import CustomerUnit, create_customer, emit, timeline, transaction, unscoped
from core.testing import make_project, make_units, make_user
from plugins.activities.models import Visit, VisitPlan, VisitStatus
from plugins.activities.visits import generate_round
from plugins.complaints.models import Case
from plugins.hotline.models import Category, WorkOrder

pytestmark = pytest.mark.frozen_time("2026-05-04T09:00+08:00")


@pytest.fixture
async def calls(app, host, frozen_time, client):
    client.cookies.set("courtyard_locale", "en")
    east = await make_project("EAST", host=host)
    west = await make_project("WEST", host=host)
    await make_user("boss", "admin", east, locale="en")
    units = await make_units(east, 3)
    with unscoped():
        await Category.create(project=east, name="水电维修", kind="repair")
        await Category.create(project=west, name="水电维修", kind="repair")
        for i, unit in enumerate(units):
            customer = await create_customer(east, f"业主{i}", [f"1380013810{i}"])
            await CustomerUnit.create(project=east, customer=customer, unit=unit, relation="owner")
        plan = await VisitPlan.create(project=east, name="回访", next_run_on=date(2026, 5, 4))
        await generate_round(plan)
        visits = await Visit.filter(round__plan_id=plan.id).order_by("id")
    await client.login("boss")
    return east, west, visits


async def _replay(visit: Visit, follow_up: str) -> None:
    """The event activities sends, sent once more (a retried delivery must open nothing new)."""
    async with transaction():
        await emit("activities.return_visit_recorded", visit.project_id, visit_id=visit.id,
                   customer_id=visit.customer_id, unit_id=visit.unit_id, outcome="problem", said="厨房漏水",
                   follow_up=follow_up, channel="phone", recorded_at="2026-05-04T01:00:00+00:00")


async def test_work_order_follow_up_opens_one_work_order_in_the_estate(client, calls):
    east, west, visits = calls
    visit = visits[0]
    response = await client.form(f"/p/EAST/activities/visits/{visit.id}", {
        "outcome": "problem", "said": "厨房漏水", "follow_up": "work_order",
    })
    assert response.status_code == 303
    with unscoped():
        orders = await WorkOrder.filter(customer_id=visit.customer_id)
        assert len(orders) == 1
        order = orders[0]
        assert order.project_id == east.id and order.unit_id == visit.unit_id
        assert f"return visit #{visit.id}" in order.description and "厨房漏水" in order.description
        history = [entry.body for entry in await timeline.history(order)]
        assert f"Opened from return visit #{visit.id}." in history
        assert not await WorkOrder.filter(project_id=west.id).exists()
        assert not await Case.filter(customer_id=visit.customer_id).exists()
        assert (await Visit.get(id=visit.id)).status == VisitStatus.DONE

    listing = await client.get("/p/EAST/hotline/")
    assert listing.status_code == 200 and order.number in listing.text
    detail = await client.get(f"/p/EAST/hotline/orders/{order.id}")
    assert f"Opened from return visit #{visit.id}." in detail.text

    with unscoped():
        await _replay(visit, "work_order")
        assert await WorkOrder.filter(customer_id=visit.customer_id).count() == 1


async def test_complaint_follow_up_opens_one_complaint_case(client, calls):
    east, _west, visits = calls
    visit = visits[1]
    response = await client.form(f"/p/EAST/activities/visits/{visit.id}", {
        "outcome": "problem", "said": "保安态度差", "follow_up": "complaint",
    })
    assert response.status_code == 303
    with unscoped():
        cases = await Case.filter(customer_id=visit.customer_id)
        assert len(cases) == 1
        case = cases[0]
        assert case.project_id == east.id and "保安态度差" in case.description
        assert f"return visit #{visit.id}" in case.description
        assert f"Opened from return visit #{visit.id}." in [e.body for e in await timeline.history(case)]
        assert not await WorkOrder.filter(customer_id=visit.customer_id).exists()

    listing = await client.get("/p/EAST/complaints/")
    assert listing.status_code == 200 and case.number in listing.text

    with unscoped():
        await _replay(visit, "complaint")
        assert await Case.filter(customer_id=visit.customer_id).count() == 1


async def test_a_disabled_module_opens_nothing_and_the_visit_is_still_recorded(client, calls):
    _east, _west, visits = calls
    disabled = await client.form("/p/EAST/modules/complaints", {"enabled": "0"})
    assert disabled.status_code in (200, 303)
    visit = visits[2]
    response = await client.form(f"/p/EAST/activities/visits/{visit.id}", {
        "outcome": "problem", "said": "电梯异响", "follow_up": "work_order",
    })
    assert response.status_code == 303
    with unscoped():
        assert (await Visit.get(id=visit.id)).status == VisitStatus.DONE
        assert await WorkOrder.filter(customer_id=visit.customer_id).count() == 1
        # A complaint follow-up reaching an estate without complaints is ignored, not an error.
        await _replay(visit, "complaint")
        assert not await Case.filter(customer_id=visit.customer_id).exists()

    await client.form("/p/EAST/modules/hotline", {"enabled": "0"})
    with unscoped():
        other = visits[0]
        await _replay(other, "work_order")
        assert not await WorkOrder.filter(customer_id=other.customer_id).exists()


async def test_without_a_request_category_the_visit_is_kept_and_the_customer_timeline_says_why(client, calls):
    east, _west, visits = calls
    with unscoped():
        await Category.filter(project_id=east.id).update(is_active=False)
    visit = visits[0]
    response = await client.form(f"/p/EAST/activities/visits/{visit.id}", {
        "outcome": "problem", "said": "窗户漏风", "follow_up": "work_order",
    })
    assert response.status_code == 303
    with unscoped():
        assert (await Visit.get(id=visit.id)).status == VisitStatus.DONE
        assert not await WorkOrder.filter(customer_id=visit.customer_id).exists()
        customer = await (await Visit.get(id=visit.id)).customer
        notes = [entry.body for entry in await timeline.history(customer)]
    assert f"No work order was opened for return visit #{visit.id}: the estate has no active request category." in notes
