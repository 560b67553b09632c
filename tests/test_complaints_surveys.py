"""Satisfaction surveys: emailed after closing, answered once through a public signed link; a low score re-opens."""

from __future__ import annotations

import re

from core.api import run_job_now, unscoped
from core.outbox import OutboxMessage
from core.testing import translated
from plugins.complaints.models import Case, Step, Survey
from tests.complaints_helpers import (  # noqa: F401  (fixtures)
    clock, estate, latest_case, local, login, open_case, walk,
)


async def survey_link(clock, customer_email: str) -> str:
    run = await run_job_now("complaints.surveys", (await _east()).id, clock=clock)
    assert run.state == "done"
    message = await OutboxMessage.filter(template="complaints/survey", recipient=customer_email).order_by("-id").first()
    assert message is not None
    return re.search(r"(/complaints/survey/\S+)", message.body_text).group(1)


async def _east():
    from core.api import Project

    with unscoped():
        return await Project.get(code="EAST")


async def test_survey_answered_once_through_the_public_link(make_client, estate, clock):
    case = await walk(await open_case(estate), estate, "closed")
    # Not before the configured delay (3 days) has passed.
    clock.at = local(2026, 3, 4, 10, 0)
    await run_job_now("complaints.surveys", estate["east"].id, clock=clock)
    assert not await OutboxMessage.filter(template="complaints/survey").exists()

    clock.at = local(2026, 3, 5, 10, 0)
    path = await survey_link(clock, "zhang@example.com")
    message = await OutboxMessage.get(template="complaints/survey")
    assert case.number in message.subject and message.locale == "zh_CN"
    # Running again sends nothing more for the same closing.
    clock.at = local(2026, 3, 5, 10, 5)
    await run_job_now("complaints.surveys", estate["east"].id, clock=clock)
    assert await OutboxMessage.filter(template="complaints/survey").count() == 1

    public = make_client()  # the customer: never logged in
    page = await public.get(path)
    assert page.status_code == 200 and case.number in page.text and 'name="score"' in page.text

    missing = await public.form(path, {"score": "9"})
    assert missing.status_code == 422 and 'id="f-score-error"' in missing.text

    answered = await public.form(path, {"score": "5", "comment": "处理很及时"})
    assert answered.status_code == 200
    with unscoped():
        survey = await Survey.get(case_id=case.id)
        assert survey.score == 5 and survey.comment == "处理很及时" and survey.answered_at is not None
        assert (await Case.get(id=case.id)).step == Step.CLOSED

    again = await public.form(path, {"score": "1"})
    assert again.status_code == 410 and translated("This survey has already been answered. Thank you for your feedback!") in again.text
    assert (await public.get(path)).status_code == 410
    with unscoped():
        assert (await Survey.get(case_id=case.id)).score == 5

    staff = await login(make_client, "agent")
    shown = await staff.get(f"/p/EAST/complaints/cases/{case.id}")
    assert "(5/5)" in shown.text and "处理很及时" in shown.text


async def test_tampered_and_expired_links_are_refused_politely(make_client, estate, clock):
    await walk(await open_case(estate), estate, "closed")
    clock.at = local(2026, 3, 5, 10, 0)
    path = await survey_link(clock, "zhang@example.com")
    public = make_client()

    token = path.rsplit("/", 1)[1]
    payload, _dot, signature = token.rpartition(".")
    tampered = f"/complaints/survey/{payload[:-2]}xx.{signature}"
    refused = await public.get(tampered)
    assert refused.status_code == 404 and translated("This link is not valid. Please use the link from your email exactly as it was sent.") in refused.text and "Traceback" not in refused.text
    assert (await public.form(tampered, {"score": "1"})).status_code == 404
    assert (await public.get("/complaints/survey/nonsense")).status_code == 404

    clock.at = local(2026, 4, 6, 10, 0)  # 32 days later: the 30-day link has expired
    expired = await public.get(path)
    assert expired.status_code == 410 and translated("This survey link has expired. Thank you all the same; you can always call us.") in expired.text
    assert (await public.form(path, {"score": "5"})).status_code == 410
    with unscoped():
        assert await Survey.filter(answered_at__isnull=False).count() == 0


async def test_a_low_score_reopens_the_case_for_a_managers_review(make_client, estate, clock):
    case = await walk(await open_case(estate, customer="lily", unit=1), estate, "closed")
    clock.at = local(2026, 3, 5, 10, 0)
    path = await survey_link(clock, "lily@example.com")
    assert (await OutboxMessage.get(template="complaints/survey")).locale == "en"

    public = make_client()
    answered = await public.form(path, {"score": "2", "comment": "Still leaking"})
    assert answered.status_code == 200 and "Thank you" in answered.text
    reopened = await latest_case()
    assert reopened.id == case.id and reopened.step == Step.FOLLOWED_UP and reopened.needs_review
    assert reopened.reopen_count == 1 and reopened.closed_at is None
    alerts = await OutboxMessage.filter(template="complaints/reopened").values_list("recipient", flat=True)
    assert "boss@example.com" in alerts and "agent@example.com" not in alerts

    agent = await login(make_client, "agent")
    refused = await agent.form(f"/p/EAST/complaints/cases/{case.id}/steps/closed", {"summary": "再次关闭"})
    assert refused.status_code == 403
    boss = await login(make_client, "boss")
    page = await boss.get(f"/p/EAST/complaints/cases/{case.id}")
    assert "review" in page.text.lower()
    blocked = await boss.form(f"/p/EAST/complaints/cases/{case.id}/steps/closed", {"summary": "直接关闭"})
    assert blocked.status_code == 409
    empty = await boss.form(f"/p/EAST/complaints/cases/{case.id}/review", {"decision": "reinvestigate"})
    assert empty.status_code == 422
    reviewed = await boss.form(f"/p/EAST/complaints/cases/{case.id}/review",
                               {"decision": "reinvestigate", "review": "请工程部重新查找渗漏点"})
    assert reviewed.status_code == 303
    again = await latest_case()
    assert again.step == Step.INFORMED and not again.needs_review
    assert again.step_due_at > clock()
