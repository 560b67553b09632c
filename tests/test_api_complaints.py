"""The complaints' JSON API: receive a complaint as the front desk would, sync cases by change, stay in the token's estate."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from core.api import timeline
from core.models import ProjectModule
from core.scope import unscoped
from core.testing import translated
from plugins.complaints import cases as svc
from plugins.complaints.models import Case, Category, Step
from tests.api_helpers import api_estate

CASES = "/api/v1/projects/{code}/complaints/cases"


@pytest.fixture
async def estates(app, host, frozen_time):
    frozen_time.set(datetime(2026, 5, 4, 9, 0, tzinfo=ZoneInfo("Asia/Shanghai")))
    east = await api_estate(host, "EAST", "13800138000")
    west = await api_estate(host, "WEST", "13900139000")
    with unscoped():
        east.leak = await Category.create(project=east.project, name="渗漏水")
        west.leak = await Category.create(project=west.project, name="渗漏水")
    return east, west


def case_body(estate, **changes) -> dict:
    body = {"customer_id": estate.customer.id, "unit_id": estate.unit.id, "category_id": estate.leak.id,
            "channel": "online", "severity": "serious", "subject": "卫生间渗水到楼下", "description": "楼下天花板滴水"}
    body.update(changes)
    return body


async def open_directly(estate, subject="门口垃圾无人清理") -> Case:
    """A case received at the front desk (the service the receipt page uses)."""
    with unscoped():
        return await svc.open_case(estate.project, svc.Intake(
            customer=estate.customer, unit=estate.unit, channel="phone", subject=subject,
        ))


async def test_a_complaint_received_through_the_api_is_numbered_and_shown_like_one_from_the_desk(
        app, estates, api_client, login_as):
    east, _west = estates
    api = await api_client([east.project], ["complaints:write"])
    answer = await api.post(CASES.format(code="EAST"), json=case_body(east))
    assert answer.status_code == 201, answer.text
    case = answer.json()
    assert case["number"] == "TS-2026-000001"
    assert case["state"] == "open" and case["step"] == "received"
    assert case["category"] == {"id": east.leak.id, "name": "渗漏水"}
    assert case["customer_id"] == east.customer.id and case["unit_id"] == east.unit.id
    assert case["severity"] == "serious" and case["channel"] == "online"
    assert case["step_due_at"] is not None and case["closed_at"] is None and case["escalation_level"] == 0
    assert case["updated_at"] == case["received_at"]
    assert case["web_path"] == f"/p/EAST/complaints/cases/{case['id']}"

    with unscoped():
        stored = await Case.get(id=case["id"])
        history = await timeline.history(stored)
    assert stored.number == "TS-2026-000001" and stored.project_id == east.project.id
    assert [e.kind for e in history] == ["status"]
    # The next one received at the desk continues the numbering.
    assert (await open_directly(east)).number == "TS-2026-000002"

    staff = await login_as("agent", east.project)
    page = await staff.get("/p/EAST/complaints/")
    assert page.status_code == 200 and "TS-2026-000001" in page.text
    detail = await staff.get(case["web_path"])
    assert detail.status_code == 200 and "卫生间渗水到楼下" in detail.text

    again = await api.get(f"{CASES.format(code='EAST')}/{case['id']}")
    assert again.status_code == 200 and again.json() == case


async def test_a_retried_create_opens_one_case(app, estates, api_client):
    east, _west = estates
    api = await api_client([east.project], ["complaints:write"])
    key = {"Idempotency-Key": "wechat-complaint-1"}
    first = await api.post(CASES.format(code="EAST"), json=case_body(east), headers=key)
    again = await api.post(CASES.format(code="EAST"), json=case_body(east), headers=key)
    assert first.status_code == again.status_code == 201
    assert again.headers["idempotent-replayed"] == "true" and again.json() == first.json()
    with unscoped():
        assert await Case.all().count() == 1


async def test_updated_since_returns_only_cases_changed_since(app, estates, api_client, frozen_time):
    east, _west = estates
    api = await api_client([east.project], ["complaints:read"])
    first, second, third = [await open_directly(east, subject) for subject in ("一", "二", "三")]
    frozen_time.tick(hours=1)
    since = frozen_time.now()
    with unscoped():
        await svc.complete_step(second, Step.RECORDED, {"category": str(east.leak.id), "description": "详细情况"})

    changed = await api.get(CASES.format(code="EAST"), params={"updated_since": since.isoformat()})
    assert changed.status_code == 200
    assert [c["number"] for c in changed.json()["items"]] == [second.number]
    assert changed.json()["items"][0]["step"] == "recorded"
    # Everything, in order of change: the case changed last comes last; pages follow the cursor.
    page = await api.get(CASES.format(code="EAST"), params={"limit": 2})
    rest = await api.get(CASES.format(code="EAST"), params={"limit": 2, "cursor": page.json()["next_cursor"]})
    assert [c["number"] for c in page.json()["items"] + rest.json()["items"]] == [
        first.number, third.number, second.number]
    assert rest.json()["next_cursor"] is None
    # Filters.
    by_step = await api.get(CASES.format(code="EAST"), params={"step": "received"})
    assert {c["number"] for c in by_step.json()["items"]} == {first.number, third.number}
    closed = await api.get(CASES.format(code="EAST"), params={"state": "closed"})
    assert closed.json()["items"] == []
    mine = await api.get(CASES.format(code="EAST"), params={"customer_id": east.customer.id, "state": "open"})
    assert len(mine.json()["items"]) == 3


async def test_a_token_sees_only_its_estates_cases_and_only_where_complaints_are_on(app, estates, api_client):
    east, west = estates
    api = await api_client([east.project], ["complaints:write"])
    theirs = await open_directly(west)
    # B's case does not exist through A's URL, nor B's estate for A's token.
    assert (await api.get(f"{CASES.format(code='EAST')}/{theirs.id}")).status_code == 404
    assert (await api.get(f"{CASES.format(code='WEST')}/{theirs.id}")).status_code == 404
    assert (await api.get(CASES.format(code="WEST"))).status_code == 404
    assert (await api.get(CASES.format(code="EAST"))).json()["items"] == []
    # A case of A cannot be given B's customer, unit or category.
    answer = await api.post(CASES.format(code="EAST"), json=case_body(
        east, customer_id=west.customer.id, unit_id=west.unit.id, category_id=west.leak.id))
    assert answer.status_code == 422
    assert sorted(f["field"] for f in answer.json()["error"]["fields"]) == ["category_id", "customer_id", "unit_id"]

    ours = await open_directly(east)
    with unscoped():
        await ProjectModule.filter(project_id=east.project.id, module="complaints").update(enabled=False)
    for answer in (await api.get(CASES.format(code="EAST")), await api.get(f"{CASES.format(code='EAST')}/{ours.id}"),
                   await api.post(CASES.format(code="EAST"), json=case_body(east))):
        assert answer.status_code == 404 and answer.json()["error"]["code"] == "not_found"
    with unscoped():
        assert await Case.filter(project_id=east.project.id).count() == 1


async def test_a_read_only_token_cannot_open_a_case(app, estates, api_client):
    east, _west = estates
    reader = await api_client([east.project], ["complaints:read"])
    answer = await reader.post(CASES.format(code="EAST"), json=case_body(east))
    assert answer.status_code == 403
    assert answer.json()["error"]["required_scope"] == "complaints:write"
    assert (await reader.get(CASES.format(code="EAST"))).status_code == 200
    # Another module's scope is not enough to read either.
    other = await api_client([east.project], ["hotline:write"])
    assert (await other.get(CASES.format(code="EAST"))).status_code == 403
    with unscoped():
        assert await Case.all().count() == 0


async def test_bad_bodies_answer_422_naming_each_field(app, estates, api_client):
    east, _west = estates
    api = await api_client([east.project], ["complaints:write"], name="小程序")

    async def fields_of(body, language="en"):
        answer = await api.post(CASES.format(code="EAST"), json=body, headers={"Accept-Language": language})
        assert answer.status_code == 422, answer.text
        return {f["field"]: f for f in answer.json()["error"]["fields"]}

    body = case_body(east)
    del body["subject"]
    assert (await fields_of(body))["subject"]["type"] == "missing"
    wrong = await fields_of(case_body(east, severity="urgent", channel="fax", unit_id=0))
    assert set(wrong) == {"severity", "channel", "unit_id"}
    assert "extra" in (await fields_of(case_body(east, id_card="110101199003074512")))["id_card"]["type"]
    # What the desk's form refuses, the API refuses with the same message.
    blank = await fields_of(case_body(east, subject="   "), "zh-CN")
    assert blank["subject"]["message"] == translated("Write a short summary of the complaint.", "zh_CN", plugin="complaints")
    assert blank["subject"]["message"] != "Write a short summary of the complaint."
    unknown = await fields_of(case_body(east, category_id=999999, unit_id=999999))
    assert unknown["category_id"]["message"] == "Choose a category of this estate."
    assert unknown["unit_id"]["message"] == "That unit is not in this estate."
    with unscoped():
        inactive = await Category.create(project=east.project, name="旧分类", is_active=False)
    assert "category_id" in await fields_of(case_body(east, category_id=inactive.id))
    with unscoped():
        assert await Case.all().count() == 0


async def test_the_case_follows_its_steps_and_never_shows_id_numbers(app, estates, api_client):
    east, _west = estates
    api = await api_client([east.project], ["complaints:read"])
    case = await open_directly(east)
    with unscoped():
        case = await svc.complete_step(case, Step.RECORDED, {"category": str(east.leak.id), "description": "详细"})
    answer = (await api.get(f"{CASES.format(code='EAST')}/{case.id}")).json()
    assert answer["step"] == "recorded" and answer["category"]["id"] == east.leak.id
    assert not any("id_card" in name or "identity" in name for name in answer)
    assert answer["description"] == "详细" and answer["due_at"] is None
