"""After an activity: QR and phone check-in, no-shows counted everywhere, the feedback chart, exports,
the customer 360 section and the dashboard tiles."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest

from core.api import create_customer, now, unscoped
from core.testing import make_project, make_user
from plugins.activities import registration as reg, tokens
from plugins.activities.models import Activity

pytestmark = pytest.mark.frozen_time("2026-05-04T09:00+08:00")


@pytest.fixture
async def estate(app, host, frozen_time):
    east = await make_project("EAST", host=host)
    await make_user("mgr", "manager", east)
    await make_user("desk", "staff", east)
    with unscoped():
        people = [
            await create_customer(east, name, [phone], email=f"{pinyin}@example.com")
            for name, pinyin, phone in [
                ("张三", "zhangsan", "13800138001"), ("李四", "lisi", "13800138002"), ("王五", "wangwu", "13800138003"),
            ]
        ]
        starts = now() + timedelta(hours=2)
        activity = await Activity.create(project=east, title="亲子运动会", place="中心广场", starts_at=starts,
                                         ends_at=starts + timedelta(hours=2), capacity=10, status="published")
        registrations = [await reg.register(activity, person, family) for person, family in zip(people, (1, 0, 2))]
    return east, activity, people, registrations


def _chart(html: str, marker: str) -> dict:
    """The chart data of the canvas after `marker` in the page."""
    tail = html[html.index(marker):]
    raw = re.search(r'data-chart="([^"]+)"', tail).group(1)
    return json.loads(raw.replace("&#34;", '"').replace("&quot;", '"').replace("&amp;", "&"))


async def test_after_the_activity(client, estate, frozen_time, run_job, outbox):
    east, activity, (zhang, li, wang), (z, l, w) = estate
    await client.login("desk")
    desk = f"/p/EAST/activities/{activity.id}/checkin"

    # The QR code on the ticket holds the check-in code; a scanner types it into the desk's box.
    ticket = tokens.ticket_url(z, activity).split("/activities/", 1)[1]
    qr = await client.get(f"/activities/{ticket}/qr.png")
    assert qr.status_code == 200 and qr.content.startswith(b"\x89PNG")
    scanned = await client.form(desk, {"q": f" {z.code[:4].lower()} {z.code[4:]}"})
    assert scanned.status_code == 200 and "checked in with 2 people" in scanned.text
    # By phone: the match is listed, one click checks in.
    found = await client.form(desk, {"q": "13800138002"})
    assert found.status_code == 200 and "李四" in found.text and f"{desk}/{l.id}" in found.text
    assert "Welcome, 李四: checked in." in (await client.form(f"{desk}/{l.id}")).text
    # 王五 never comes.

    frozen_time.tick(hours=5)
    await client.login("mgr")
    page = await client.get(f"/p/EAST/activities/{activity.id}")
    assert 'id="no-shows">1<' in page.text
    missed = await client.get(f"/p/EAST/activities/signups?no_show=1&export=csv")
    assert "王五" in missed.text and "张三" not in missed.text and "No-show" in missed.text
    came = await client.get(f"/p/EAST/activities/signups?no_show=0")
    assert "张三" in came.text and "王五" not in came.text
    card = await client.get(f"/p/EAST/customers/{wang.id}")
    assert "0 attended, 1 no-shows" in card.text
    assert "1 attended, 0 no-shows" in (await client.get(f"/p/EAST/customers/{zhang.id}")).text

    # Surveys go to the two who came; their answers make the chart.
    await run_job("activities.feedback", east)
    mails = await outbox.messages(template="activities/feedback")
    assert sorted(m.to for m in mails) == ["lisi@example.com", "zhangsan@example.com"]
    for mail, stars in zip(mails, ("5", "3")):
        path = re.search(r"https?://[^/\s]+(/activities/feedback/\S+)", mail.text).group(1)
        assert (await client.form(path, {"rating": stars, "comment": "很好" if stars == "5" else ""})).status_code == 200
    results = await client.get(f"/p/EAST/activities/{activity.id}/feedback")
    assert 'id="average">4' in results.text and 'id="answers">2<' in results.text
    assert _chart(results.text, "Ratings")["datasets"][0]["data"] == [0, 0, 1, 0, 1]
    export = await client.get(f"/p/EAST/activities/signups?activity={activity.id}&export=xlsx")
    assert export.status_code == 200 and export.content.startswith(b"PK")

    dashboard = await client.get("/p/EAST/")
    # 3 of the 6 registered people (with family) came: 张三 and one family member, 李四.
    assert "50%" in dashboard.text and "3 of 6 registered people came" in dashboard.text
    assert "4.0 / 5" in dashboard.text and "2 answers" in dashboard.text
    assert _chart(dashboard.text, "Activity satisfaction (90 days)")["datasets"][0]["data"] == [0, 0, 1, 0, 1]
