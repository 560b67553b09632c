"""Complaint jobs with frozen time: deadline warning, escalation level by level, the weekly analysis email."""

from __future__ import annotations

from core.api import run_job_now, timeline, unscoped
from core.outbox import OutboxMessage
from plugins.complaints.models import Escalation
from tests.complaints_helpers import (  # noqa: F401  (fixtures)
    STEP_FORMS, clock, estate, latest_case, local, login, open_case, walk,
)


async def watch(clock, estate):
    run = await run_job_now("complaints.deadlines", estate["east"].id, clock=clock)
    assert run.state == "done"
    return await latest_case()


async def recipients(template: str) -> list[str]:
    return list(await OutboxMessage.filter(template=f"complaints/{template}").order_by("id")
                .values_list("recipient", flat=True))


async def test_overdue_cases_escalate_level_by_level(make_client, estate, clock):
    case = await open_case(estate)  # Monday 10:00; recording is due at 11:00
    assert case.step_due_at == local(2026, 3, 2, 11, 0)

    clock.at = local(2026, 3, 2, 10, 10)
    case = await watch(clock, estate)
    assert case.warned_at == clock() and case.escalation_level == Escalation.HANDLER
    # No one is assigned yet: those who assign cases hear of it.
    assert await recipients("deadline_warning") == ["boss@example.com"]

    clock.at = local(2026, 3, 2, 11, 10)
    case = await watch(clock, estate)
    assert case.escalation_level == Escalation.SUPERVISOR
    clock.at = local(2026, 3, 2, 11, 20)
    assert (await watch(clock, estate)).escalation_level == Escalation.SUPERVISOR  # once per level

    # Eight working hours overdue (11:00–12:00, 13:30–18:00, Tuesday 9:00–11:30): the manager.
    clock.at = local(2026, 3, 3, 11, 20)
    assert (await watch(clock, estate)).escalation_level == Escalation.SUPERVISOR
    clock.at = local(2026, 3, 3, 11, 40)
    assert (await watch(clock, estate)).escalation_level == Escalation.MANAGER

    # Sixteen working hours: head office. The evening and the night do not count.
    clock.at = local(2026, 3, 3, 23, 0)
    assert (await watch(clock, estate)).escalation_level == Escalation.MANAGER
    clock.at = local(2026, 3, 4, 12, 0)
    case = await watch(clock, estate)
    assert case.escalation_level == Escalation.HEAD_OFFICE
    assert "hq@example.com" in await recipients("escalated")
    assert "agent@example.com" not in await recipients("escalated")
    with unscoped():
        levels = [e.data["level"] for e in reversed(await timeline.history(case)) if e.kind == "escalation"]
    assert levels == [1, 2, 3]

    agent = await login(make_client, "agent")
    page = await agent.get(f"/p/EAST/complaints/cases/{case.id}")
    assert "Escalated to head office" in page.text or "总部" in page.text
    overdue = await agent.get("/p/EAST/complaints/", params={"state": "overdue"})
    assert case.number in overdue.text

    # Completing the step starts a fresh clock.
    done = await agent.form(f"/p/EAST/complaints/cases/{case.id}/steps/recorded", STEP_FORMS["recorded"](estate))
    assert done.status_code == 303
    case = await latest_case()
    assert case.escalation_level == Escalation.HANDLER and case.warned_at is None and case.step_due_at > clock()


async def test_weekly_analysis_goes_to_the_estates_managers(estate, clock):
    await walk(await open_case(estate, category="leak"), estate, "closed")
    await open_case(estate, unit=1, category="attitude", subject="保安态度差")
    clock.at = local(2026, 3, 9, 8, 0)  # the Monday after
    run = await run_job_now("complaints.weekly_analysis", estate["east"].id, clock=clock)
    assert run.state == "done"
    messages = await OutboxMessage.filter(template="complaints/weekly")
    assert [m.recipient for m in messages] == ["boss@example.com"]
    body = messages[0].body_text
    assert "2026-03-02" in messages[0].subject or "2026" in messages[0].subject
    assert "渗漏水: 1" in body and "服务态度: 1" in body
