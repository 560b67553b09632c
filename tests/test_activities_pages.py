"""Every activities page renders with the demo estate's data, and the lists export."""

from __future__ import annotations

from core.api import unscoped
from core.demo import load_demo
from plugins.activities.models import Activity, Member, Visit, VisitPlan


async def test_pages_render_on_demo_data(client, app, host):
    await load_demo(host)
    await client.login("ch_manager", "demo1234")
    with unscoped():
        activity = await Activity.filter(project__code="CUIHU", title="中秋亲子游园会").first()
        member = await Member.filter(project__code="CUIHU").first()
        plan = await VisitPlan.filter(project__code="CUIHU").first()
        visit = await Visit.filter(project__code="CUIHU").first()
    assert activity and member and plan and visit
    base = "/p/CUIHU/activities/"
    for path in [
        "", "new", "signups", f"{activity.id}", f"{activity.id}/edit", f"{activity.id}/feedback", f"{activity.id}/checkin",
        f"{activity.id}/customers?q=a", "members", "members/new", f"members/{member.id}", "club", "plans", "plans/new",
        f"plans/{plan.id}", f"plans/{plan.id}/edit", "visits", f"visits/{visit.id}",
        "?export=xlsx", "signups?export=csv", "members?export=xlsx", "visits?export=csv", "plans?export=csv",
    ]:
        response = await client.get(base + path)
        assert response.status_code == 200, f"{path}: {response.status_code} {response.text[-800:]}"
    dashboard = await client.get("/p/CUIHU/")
    assert dashboard.text.count('data-plugin="activities"') == 4 and "<canvas data-chart" in dashboard.text
    card = await client.get(f"/p/CUIHU/customers/{member.customer_id}")
    assert member.number in card.text
    found = await client.get("/search", params={"q": "茶话会"})
    assert "业主茶话会" in found.text

    # The group's gala, hosted by 翠湖花园 and shared with 锦绣江南: each estate's page shows its own owners.
    with unscoped():
        gala = await Activity.get(project__code="CUIHU", title="集团业主答谢晚会")
        guest = await Activity.get(project__code="JINXIU", host_activity_id=gala.id)
    page = await client.get(f"{base}{gala.id}")
    assert page.status_code == 200 and "锦绣江南" in page.text and 'id="seats-taken">24 / 30<' in page.text
    assert (await client.get(f"/p/JINXIU/activities/{guest.id}")).status_code == 404
    await client.login("jx_manager", "demo1234")
    for path in (f"{guest.id}", f"{guest.id}/edit", f"{guest.id}/feedback", f"{guest.id}/checkin"):
        response = await client.get(f"/p/JINXIU/activities/{path}")
        assert response.status_code == 200, f"{path}: {response.status_code} {response.text[-800:]}"
    assert "翠湖花园" in (await client.get(f"/p/JINXIU/activities/{guest.id}")).text
