"""Complaint cases end to end: receipt, the eleven steps (no skipping), repeats, hotline intake, isolation."""

from __future__ import annotations

from datetime import timedelta

from core.api import timeline, unscoped
from core.plugins import current_host
from plugins.complaints import cases as svc
from plugins.complaints.models import Case, CaseLink, Step
from tests.complaints_helpers import (  # noqa: F401  (fixtures)
    STEP_FORMS, clock, estate, latest_case, local, login, open_case, walk,
)


async def test_a_case_walks_through_all_eleven_steps(make_client, estate, clock):
    agent = await login(make_client, "agent")
    form = await agent.get("/p/EAST/complaints/new")
    assert form.status_code == 200 and "渗漏水" in form.text
    found = await agent.get("/p/EAST/complaints/new/customers", params={"lookup": "zhangsan"}, headers={"HX-Request": "true"})
    assert "张三" in found.text and f'value="{estate["zhang"].id}"' in found.text

    bad = await agent.form("/p/EAST/complaints/new", {"channel": "phone", "severity": "normal", "subject": ""})
    assert bad.status_code == 422
    assert "Find the customer who complains." in bad.text or "找到" in bad.text
    assert await latest_case() is None

    created = await agent.form("/p/EAST/complaints/new", {
        "customer_id": str(estate["zhang"].id), "unit": estate["units"][0].code, "channel": "visit",
        "severity": "normal", "subject": "卫生间渗水", "description": "楼下天花板滴水",
    })
    assert created.status_code == 303
    case = await latest_case()
    assert case.number == "TS-2026-000001" and case.step == Step.RECEIVED
    assert created.headers["location"] == f"/p/EAST/complaints/cases/{case.id}"
    # Recording the details is due within one working hour of receipt.
    assert case.step_due_at == local(2026, 3, 2, 11, 0)

    boss = await login(make_client, "boss")
    clients = {"assessed": boss, "closed": boss}
    for hour, step in enumerate(Step.ORDER[1:], 1):
        clock.at = local(2026, 3, 2, 10, 0) + timedelta(minutes=20 * hour)
        user = clients.get(step, agent)
        page = await user.get(f"/p/EAST/complaints/cases/{case.id}")
        assert f'action="/p/EAST/complaints/cases/{case.id}/steps/{step}"' in page.text, step
        done = await user.form(f"/p/EAST/complaints/cases/{case.id}/steps/{step}", STEP_FORMS[step](estate))
        assert done.status_code == 303, (step, done.text[:2000])
        if step == "assessed":
            case = await latest_case()
            # Serious: 40 working hours from Monday 10:00 (7.5 h a day: 6.5 + 4 × 7.5 + 3.5): next Monday 14:00.
            assert case.due_at == local(2026, 3, 9, 14, 0)
            assert case.department_id == estate["engineering"].id

    case = await latest_case()
    assert case.step == Step.CLOSED and case.closed_at == local(2026, 3, 2, 13, 20)
    assert case.root_cause == "construction" and case.responsible_party == "contractor"
    assert case.summary == "防水施工工序需加强验收"
    page = await agent.get(f"/p/EAST/complaints/cases/{case.id}")
    assert page.status_code == 200
    for text in ("TS-2026-000001", "防水层施工未按规范", "重做防水并赔偿楼下吊顶", "防水施工工序需加强验收"):
        assert text in page.text
    with unscoped():
        entries = await timeline.history(case)
    steps = [e.data.get("step") for e in reversed(entries) if e.kind == "step"]
    assert steps == Step.ORDER[1:]
    assert all(e.author_id for e in entries if e.kind == "step")


async def test_a_step_cannot_be_skipped_nor_done_without_its_permission(make_client, estate, clock):
    case = await open_case(estate)
    agent = await login(make_client, "agent")
    skipped = await agent.form(f"/p/EAST/complaints/cases/{case.id}/steps/investigated", STEP_FORMS["investigated"](estate))
    assert skipped.status_code == 409
    assert "skip" in skipped.text or "跳" in skipped.text
    assert (await latest_case()).step == Step.RECEIVED

    await agent.form(f"/p/EAST/complaints/cases/{case.id}/steps/recorded", STEP_FORMS["recorded"](estate))
    # Assessing and assigning is for those who assign cases; an agent is refused.
    refused = await agent.form(f"/p/EAST/complaints/cases/{case.id}/steps/assessed", STEP_FORMS["assessed"](estate))
    assert refused.status_code == 403

    boss = await login(make_client, "boss")
    invalid = await boss.form(f"/p/EAST/complaints/cases/{case.id}/steps/assessed", {"severity": "huge", "department": ""})
    assert invalid.status_code == 422
    assert 'id="f-severity-error"' in invalid.text and 'id="f-department-error"' in invalid.text
    assert (await latest_case()).step == Step.RECORDED


async def test_asking_for_changes_goes_back_to_proposing_a_solution(estate, clock):
    case = await walk(await open_case(estate), estate, "proposed")
    with unscoped():
        case = await svc.complete_step(case, "agreed", {"opinion": "changes", "customer_opinion": "补偿太少"})
    assert case.step == Step.ANALYSED and svc.next_step(case) == Step.PROPOSED
    with unscoped():
        case = await svc.complete_step(case, "proposed", {"solution": "重做防水并赔偿1500元", "compensation": "1500"})
        case = await svc.complete_step(case, "agreed", {"opinion": "accepts"})
    assert case.step == Step.AGREED and case.solution_rounds == 2 and str(case.compensation) == "1500.00"


async def test_repeat_complaints_are_flagged_and_linked(make_client, estate, clock):
    first = await open_case(estate, unit=0, category="leak", subject="卫生间渗水")
    clock.at = local(2026, 3, 20, 10, 0)
    # Another unit, same defect category: a repeat of the defect.
    second = await open_case(estate, customer="lily", unit=1, category="leak", subject="阳台渗水")
    # Same unit, a service matter: a repeat from the unit.
    third = await open_case(estate, unit=0, category="attitude", subject="维修人员态度差")
    # A different unit and no defect category: not a repeat.
    other = await open_case(estate, customer="lily", unit=2, category="attitude", subject="客服电话没人接")
    with unscoped():
        assert not (await Case.get(id=first.id)).is_repeat
        assert (await Case.get(id=second.id)).is_repeat and (await Case.get(id=third.id)).is_repeat
        assert not (await Case.get(id=other.id)).is_repeat
        link = await CaseLink.get(case_id=second.id)
    assert link.earlier_id == first.id and link.same_defect and not link.same_unit

    agent = await login(make_client, "agent")
    page = await agent.get(f"/p/EAST/complaints/cases/{third.id}")
    assert first.number in page.text and "same unit" in page.text
    earlier = await agent.get(f"/p/EAST/complaints/cases/{first.id}")
    assert second.number in earlier.text and third.number in earlier.text

    # Outside the window (90 days by default) nothing is linked.
    clock.at = local(2026, 7, 1, 10, 0)
    late = await open_case(estate, unit=0, category="leak", subject="又渗水了")
    assert not late.is_repeat


async def test_a_hotline_complaint_opens_a_case(make_client, estate, clock):
    from plugins.hotline.models import Category as HotlineCategory

    with unscoped():
        hotline_category = await HotlineCategory.create(project=estate["east"], name="服务态度", kind="complaint")
    agent = await login(make_client, "agent")
    created = await agent.form("/p/EAST/hotline/intake", {
        "customer_id": str(estate["zhang"].id), "channel": "phone", "kind": "complaint", "urgency": "high",
        "category": str(hotline_category.id), "unit": estate["units"][0].code, "caller_phone": "13800138000",
        "subject": "保安态度恶劣", "description": "晚上回家被保安呵斥",
    })
    assert created.status_code == 303, created.text[:1000]
    case = await latest_case()
    assert case is not None and case.subject == "保安态度恶劣" and case.work_order_number.startswith("GD-")
    assert case.category_id == estate["attitude"].id and case.severity == "serious"
    assert case.customer_id == estate["zhang"].id and case.unit_id == estate["units"][0].id
    listing = await agent.get("/p/EAST/complaints/")
    assert case.number in listing.text


async def test_cases_open_without_the_hotline(make_client, app, host, estate, clock):
    from core.people import create_customer
    from core.testing import make_project, make_user

    await make_project("SOLO", modules=["complaints"], host=host)
    with unscoped():
        from core.api import Project

        solo = await Project.get(code="SOLO")
        wang = await create_customer(solo, "王五", ["13700137000"])
    await make_user("solo_agent", "agent", solo)
    agent = await login(make_client, "solo_agent")
    assert (await agent.get("/p/SOLO/hotline/")).status_code == 404
    created = await agent.form("/p/SOLO/complaints/new", {
        "customer_id": str(wang.id), "channel": "phone", "severity": "minor", "subject": "电梯广告太吵",
    })
    assert created.status_code == 303
    assert (await latest_case()).project_id == solo.id


async def test_units_with_an_open_complaint_hold_dunning(estate, clock):
    case = await open_case(estate, unit=1)
    unit_ids = [u.id for u in estate["units"]]

    async def held():
        results = await current_host().call("dunning_holds", enabled={"complaints"}, project=estate["east"],
                                            unit_ids=unit_ids)
        return [set(r.value) for r in results if r.plugin == "complaints"]

    assert await held() == [{estate["units"][1].id}]
    await walk(case, estate, "closed")
    assert await held() == [set()]


async def test_another_estates_cases_do_not_exist(make_client, estate, clock):
    west_case = await open_case({**estate, "east": estate["west"], "units": estate["west_units"], "zhang": estate["li"]})
    east_case = await open_case(estate)
    agent = await login(make_client, "agent")
    assert (await agent.get(f"/p/EAST/complaints/cases/{west_case.id}")).status_code == 404
    posted = await agent.form(f"/p/EAST/complaints/cases/{west_case.id}/steps/recorded", STEP_FORMS["recorded"](estate))
    assert posted.status_code == 404
    assert (await agent.get(f"/p/WEST/complaints/cases/{west_case.id}")).status_code == 404
    west = await login(make_client, "west_boss")
    assert (await west.get(f"/p/WEST/complaints/cases/{east_case.id}")).status_code == 404
    assert (await west.get(f"/p/WEST/complaints/cases/{west_case.id}")).status_code == 200
    with unscoped():
        assert (await Case.get(id=west_case.id)).step == Step.RECEIVED
