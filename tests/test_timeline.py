"""A record's history: entries with who and when, notes from the page, estates kept apart."""

from datetime import datetime, timezone

import pytest

from core import timeline
from core.api import transaction
from core.people import create_customer
from core.scope import unscoped
from core.testing import make_project, make_user
from core.timeline import TimelineEntry


@pytest.fixture
async def estates(app, host):
    east = await make_project("EAST", host=host)
    west = await make_project("WEST", host=host)
    agent = await make_user("east_agent", "agent", east, display_name="王客服")
    await make_user("west_agent", "agent", west)
    with unscoped():
        zhang = await create_customer(east, "张三", ["13800138000"])
        li = await create_customer(west, "李四", ["13900139000"])
    return east, west, agent, zhang, li


def url(customer) -> str:
    return f"/p/{'EAST' if customer.name == '张三' else 'WEST'}/timeline/core.Customer/{customer.id}"


async def test_entries_show_newest_first_with_author_and_local_time(client, estates):
    east, west, agent, zhang, li = estates
    with unscoped():
        first = await timeline.post(zhang, "status", "受理", data={"from": "new", "to": "accepted"})
        await TimelineEntry.filter(id=first.id).update(created_at=datetime(2024, 5, 1, 2, 30, tzinfo=timezone.utc))
        await timeline.post(zhang, "call", "回访：业主满意", author=agent)
        entries = await timeline.history(zhang)
    assert [e.body for e in entries] == ["回访：业主满意", "受理"]
    assert entries[0].author.display_name == "王客服" and entries[1].author is None

    await client.login("east_agent")
    page = await client.get(url(zhang))
    assert page.status_code == 200
    text = page.text
    assert text.index("回访：业主满意") < text.index("受理")
    assert "王客服" in text and "System" in text
    assert "2024-05-01 10:30" in text  # 02:30 UTC shown in the estate's time zone (Asia/Shanghai)
    assert "new → accepted" in text


async def test_note_added_from_the_page_and_empty_note_refused(client, estates):
    east, west, agent, zhang, li = estates
    await client.login("east_agent")
    added = await client.form(url(zhang) + "/notes", {"body": "  业主要求周六上门  "}, htmx=True)
    assert added.status_code == 200
    assert "业主要求周六上门" in added.text and "王客服" in added.text
    assert "Note added." in added.headers["HX-Trigger"]

    empty = await client.form(url(zhang) + "/notes", {"body": "   "}, htmx=True)
    assert empty.status_code == 422 and "Write the note first." in empty.text
    too_long = await client.form(url(zhang) + "/notes", {"body": "长" * 4001}, htmx=True)
    assert too_long.status_code == 422

    # Without htmx the browser goes back to the page it came from.
    plain = await client.form(url(zhang) + "/notes", {"body": "已电话联系", "next": f"/p/EAST/customers/{zhang.id}"})
    assert plain.status_code == 303 and plain.headers["location"] == f"/p/EAST/customers/{zhang.id}"
    elsewhere = await client.form(url(zhang) + "/notes", {"body": "再次联系", "next": "https://evil.example/"})
    assert elsewhere.headers["location"] == "/p/EAST/"

    with unscoped():
        notes = await TimelineEntry.filter(subject="core.Customer", subject_id=zhang.id).order_by("id")
    assert [(n.kind, n.body, n.author_id) for n in notes] == [
        ("note", "业主要求周六上门", agent.id), ("note", "已电话联系", agent.id), ("note", "再次联系", agent.id),
    ]


async def test_another_estates_record_answers_404(client, estates):
    east, west, agent, zhang, li = estates
    await client.login("east_agent")
    # The WEST customer through the EAST address, and the WEST estate itself.
    assert (await client.get(f"/p/EAST/timeline/core.Customer/{li.id}")).status_code == 404
    assert (await client.form(f"/p/EAST/timeline/core.Customer/{li.id}/notes", {"body": "x"})).status_code == 404
    assert (await client.get(url(li))).status_code == 404
    # Unknown models and records that are not an estate's business records.
    assert (await client.get(f"/p/EAST/timeline/core.Nothing/{zhang.id}")).status_code == 404
    assert (await client.get(f"/p/EAST/timeline/core.User/{agent.id}")).status_code == 404
    assert (await client.get(f"/p/EAST/timeline/core.Customer/999999")).status_code == 404
    with unscoped():
        assert await TimelineEntry.filter(subject_id=li.id).count() == 0


async def test_entries_posted_in_a_failed_change_roll_back_with_it(client, estates):
    east, west, agent, zhang, li = estates
    with unscoped(), pytest.raises(RuntimeError):
        async with transaction():
            await timeline.post(zhang, "status", "已派工", author=agent)
            raise RuntimeError("the change failed")
    with unscoped():
        assert await timeline.history(zhang) == []
    with pytest.raises(ValueError):
        await timeline.post(zhang, "Bad Kind")


async def test_entries_cannot_be_edited_or_deleted(client, estates):
    east, west, agent, zhang, li = estates
    await client.login("east_agent")
    await client.form(url(zhang) + "/notes", {"body": "原始记录"}, htmx=True)
    with unscoped():
        entry = await TimelineEntry.get(subject_id=zhang.id)
    for path in (f"{url(zhang)}/notes/{entry.id}", f"{url(zhang)}/notes/{entry.id}/delete"):
        assert (await client.form(path, {"body": "改过的"})).status_code in (404, 405)
    with unscoped():
        assert (await TimelineEntry.get(id=entry.id)).body == "原始记录"
