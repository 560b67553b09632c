"""Duty log with shift handover and daily review; FAQ search by pinyin, questions and answers."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from core.api import unscoped
from core.people import create_customer
from core.testing import make_project, make_user
from plugins.hotline import duty, knowledge
from plugins.hotline.call_models import Call, DutyReview, DutyShift, FaqArticle, FaqQuestion

NOW = datetime(2026, 11, 23, 1, 0, tzinfo=timezone.utc)  # 09:00 in Shanghai


class Clock:
    def __init__(self, at: datetime):
        self.at = at

    def __call__(self) -> datetime:
        return self.at


@pytest.fixture
def clock(monkeypatch):
    frozen = Clock(NOW)
    monkeypatch.setattr(duty, "clock", frozen)
    monkeypatch.setattr(knowledge, "clock", frozen)
    return frozen


@pytest.fixture
async def desk(app, host):
    east = await make_project("EAST", host=host)
    west = await make_project("WEST", host=host)
    for name, role in (("day_agent", "agent"), ("night_agent", "agent"), ("manager_zhao", "manager")):
        await make_user(name, role, east, locale="en")
    return east, west


# Duty log ------------------------------------------------------------------------


async def test_shift_handover_from_the_outgoing_to_the_incoming_agent(make_client, desk, clock):
    day, night = make_client(), make_client()
    await day.login("day_agent")
    await night.login("night_agent")

    assert (await day.form("/p/EAST/hotline/duty/start")).status_code == 303
    clock.at = NOW + timedelta(hours=1)
    visit = await day.form("/p/EAST/hotline/duty/entries", {"kind": "visit", "visitor": "3-2-1502 李女士", "summary": "借用梯子"})
    assert visit.status_code == 303

    # No note, no handover: the shift stays open.
    refused = await day.form("/p/EAST/hotline/duty/end", {"handover_note": "  "})
    assert refused.status_code == 422 and "handover note" in refused.text
    with unscoped():
        assert await DutyShift.filter(ended_at__isnull=True).count() == 1

    clock.at = NOW + timedelta(hours=12)
    ended = await day.form("/p/EAST/hotline/duty/end", {"handover_note": "1502 的梯子明早归还；消防通道已检查"})
    assert ended.status_code == 303

    page = await night.get("/p/EAST/hotline/duty")
    assert "Handover from day_agent" in page.text and "1502 的梯子明早归还" in page.text
    with unscoped():
        shift = await DutyShift.get(agent__username="day_agent")
    # The outgoing agent cannot confirm their own note.
    assert (await day.form(f"/p/EAST/hotline/duty/shifts/{shift.id}/acknowledge")).status_code == 422
    assert (await night.form(f"/p/EAST/hotline/duty/shifts/{shift.id}/acknowledge")).status_code == 303
    page = await night.get("/p/EAST/hotline/duty")
    assert "Handover from" not in page.text
    assert "night_agent ·" in page.text  # confirmed by, in the shifts table
    # Confirming twice changes nothing.
    assert (await night.form(f"/p/EAST/hotline/duty/shifts/{shift.id}/acknowledge")).status_code == 422


async def test_day_log_lists_calls_and_visits_in_time_order(client, desk, clock):
    east, _ = desk
    with unscoped():
        customer = await create_customer(east, "王五", ["13900139000"])
        await Call.create(
            project=east, external_id="c-1", caller="+8613900139000", customer=customer,
            started_at=NOW + timedelta(minutes=30), status="ended", duration_seconds=95,
        )
        # Another day's call is not on today's log.
        await Call.create(project=east, external_id="c-0", caller="+8613700000000", started_at=NOW - timedelta(days=1))
    await client.login("day_agent")
    await client.form("/p/EAST/hotline/duty/start")
    clock.at = NOW + timedelta(hours=1)
    await client.form("/p/EAST/hotline/duty/entries", {"kind": "visit", "visitor": "快递员", "summary": "代收包裹"})
    page = await client.get("/p/EAST/hotline/duty")
    assert page.status_code == 200
    assert "王五" in page.text and "1:35" in page.text
    assert page.text.index("王五") < page.text.index("代收包裹")
    assert "+8613700000000" not in page.text and "137****0000" not in page.text
    yesterday = await client.get("/p/EAST/hotline/duty?day=2026-11-22")
    assert "137****0000" in yesterday.text and "王五" not in yesterday.text
    assert (await client.get("/p/EAST/hotline/duty?day=tomorrow")).status_code == 422


async def test_entry_without_a_shift_or_summary_is_refused(client, desk, clock):
    await client.login("day_agent")
    no_shift = await client.form("/p/EAST/hotline/duty/entries", {"kind": "visit", "summary": "问路"})
    assert no_shift.status_code == 422 and "Start your shift first" in no_shift.text
    await client.form("/p/EAST/hotline/duty/start")
    empty = await client.form("/p/EAST/hotline/duty/entries", {"kind": "visit", "summary": ""})
    assert empty.status_code == 422
    from plugins.hotline.call_models import DutyLogEntry

    with unscoped():
        assert await DutyLogEntry.all().count() == 0


async def test_manager_marks_the_day_reviewed_once(make_client, desk, clock):
    manager, agent = make_client(), make_client()
    await manager.login("manager_zhao")
    await agent.login("day_agent")
    assert (await agent.form("/p/EAST/hotline/duty/review", {"day": "2026-11-23"})).status_code == 403
    done = await manager.form("/p/EAST/hotline/duty/review", {"day": "2026-11-23", "note": "记录完整"})
    assert done.status_code == 303
    page = await agent.get("/p/EAST/hotline/duty")
    assert "Reviewed" in page.text and "manager_zhao" in page.text and "记录完整" in page.text
    again = await manager.form("/p/EAST/hotline/duty/review", {"day": "2026-11-23"})
    assert again.status_code == 422 and "already been reviewed" in again.text
    future = await manager.form("/p/EAST/hotline/duty/review", {"day": "2026-11-25"})
    assert future.status_code == 422
    with unscoped():
        assert await DutyReview.all().count() == 1


# FAQ ---------------------------------------------------------------------------------


async def test_agent_finds_articles_by_pinyin_while_on_the_phone(client, desk):
    east, west = desk
    with unscoped():
        await knowledge.create_article(east.id, "停车场怎么收费？", "地面车位每月 200 元，地下车位每月 350 元。", "停车, 收费", None)
        await knowledge.create_article(None, "物业服务中心几点上班？", "每天 8:00 至 21:00。", "作息", None)
        await knowledge.create_article(west.id, "西区停车卡在哪里办理？", "西区服务中心。", "停车", None)
    await client.login("day_agent")

    async def found(q: str) -> str:
        response = await client.get("/p/EAST/hotline/faq", params={"q": q}, headers={"HX-Request": "true"})
        assert response.status_code == 200
        return response.text

    for query in ("tingche", "TC", "停车", "shoufei tingche", "350"):
        text = await found(query)
        assert "停车场怎么收费" in text, query
        assert "西区停车卡" not in text  # another estate's article
    assert "几点上班" in await found("shangban")  # an article for every estate
    nothing = await found("chongwu")
    assert "No answer found" in nothing and "停车场" not in nothing


async def test_unanswered_question_goes_to_the_manager_whose_answer_becomes_an_article(make_client, desk, clock):
    agent, manager = make_client(), make_client()
    await agent.login("day_agent")
    await manager.login("manager_zhao")

    empty = await agent.form("/p/EAST/hotline/faq/questions", {"question": " "})
    assert empty.status_code == 422
    asked = await agent.form("/p/EAST/hotline/faq/questions", {"question": "宠物可以坐客梯吗？"})
    assert asked.status_code == 303
    with unscoped():
        task = await FaqQuestion.get(status="open")

    page = await manager.get("/p/EAST/hotline/faq")
    assert "Questions waiting for an answer" in page.text and "宠物可以坐客梯吗" in page.text
    # An agent does not answer for the manager.
    assert (await agent.form(f"/p/EAST/hotline/faq/questions/{task.id}/answer", {"question": "x", "answer": "y"})).status_code == 403

    missing = await manager.form(f"/p/EAST/hotline/faq/questions/{task.id}/answer", {"question": "宠物可以坐客梯吗？", "answer": ""})
    assert missing.status_code == 422
    with unscoped():
        assert await FaqArticle.all().count() == 0

    answered = await manager.form(
        f"/p/EAST/hotline/faq/questions/{task.id}/answer",
        {"question": "宠物可以坐客梯吗？", "answer": "可以，请牵绳并避开高峰时段，大型犬请走货梯。", "tags": "宠物，电梯"},
    )
    assert answered.status_code == 303
    with unscoped():
        task = await FaqQuestion.get(id=task.id)
        article = await FaqArticle.get(id=task.article_id)
    assert task.status == "answered" and article.project_id == desk[0].id and article.tags == "宠物, 电梯"

    result = await agent.get("/p/EAST/hotline/faq", params={"q": "chongwu"}, headers={"HX-Request": "true"})
    assert "大型犬请走货梯" in result.text
    page = await manager.get("/p/EAST/hotline/faq")
    assert "No questions are waiting" in page.text
    twice = await manager.form(f"/p/EAST/hotline/faq/questions/{task.id}/answer", {"question": "q", "answer": "a"})
    assert twice.status_code == 422
    with unscoped():
        assert await FaqArticle.all().count() == 1
