"""Hotline work orders end to end: intake, dispatch, department work, callbacks, SLA escalation, isolation."""

from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import pytest

from core.api import Department, run_job_now, timeline, unscoped
from core.models import Customer
from core.outbox import OutboxMessage
from core.people import create_customer, link_unit
from core.testing import make_project, make_units, make_user, translated
from plugins.hotline import workorders as wo
from plugins.hotline.models import Assignment, CallbackTask, Category, Escalation, Status, TaskStatus, WorkOrder

SHANGHAI = ZoneInfo("Asia/Shanghai")


def local(*parts) -> datetime:
    return datetime(*parts, tzinfo=SHANGHAI)


class Frozen:
    def __init__(self, at: datetime):
        self.at = at

    def __call__(self) -> datetime:
        return self.at.astimezone(timezone.utc)


@pytest.fixture
def clock(monkeypatch):
    frozen = Frozen(local(2026, 9, 30, 16, 0))
    monkeypatch.setattr(wo, "clock", frozen)
    return frozen


@pytest.fixture
async def estate(app, host, clock):
    east = await make_project("EAST", host=host)
    west = await make_project("WEST", host=host)
    with unscoped():
        engineering = await Department.create(project=east, name="工程部")
        cleaning = await Department.create(project=east, name="保洁部")
        repair = await Category.create(project=east, name="报修", kind="repair")
        leak = await Category.create(
            project=east, name="漏水", parent=repair, kind="repair", sla={"normal": {"response": 2, "resolution": 8}}
        )
        west_category = await Category.create(project=west, name="报修", kind="repair")
        units = await make_units(east, 2)
        zhang = await create_customer(east, "张三", ["13800138000"], email="zhang@example.com", preferred_channel="email")
        await link_unit(zhang, units[0])
        li = await create_customer(west, "李四", ["13900139000"])
    await make_user("agent", "agent", east, display_name="王客服", email="agent@example.com")
    await make_user("plumber", "staff", east, display_name="刘师傅", email="plumber@example.com", department=engineering)
    await make_user("cleaner", "staff", east, display_name="陈阿姨", department=cleaning)
    await make_user("boss", "manager", east, display_name="赵经理", email="boss@example.com")
    await make_user("west_agent", "agent", west)
    return {
        "east": east, "west": west, "engineering": engineering, "cleaning": cleaning, "leak": leak,
        "west_category": west_category, "units": units, "zhang": zhang, "li": li,
    }


async def login(make_client, username):
    c = make_client()
    await c.login(username)
    return c


async def intake(c, estate, **over):
    data = {
        "customer_id": str(estate["zhang"].id), "channel": "phone", "kind": "repair", "urgency": "normal",
        "category": str(estate["leak"].id), "unit": estate["units"][0].code, "caller_phone": "138 0013 8000",
        "subject": "厨房水管漏水", "description": "水槽下方一直滴水",
    }
    data.update(over)
    return await c.form("/p/EAST/hotline/intake", data)


async def the_order(number=None) -> WorkOrder:
    with unscoped():
        query = WorkOrder.all() if number is None else WorkOrder.filter(number=number)
        return await query.order_by("-id").first()


async def outbox(template: str) -> list[OutboxMessage]:
    return await OutboxMessage.filter(template=f"hotline/{template}").order_by("id")


async def test_intake_dispatch_done_callback_satisfied_closes_the_loop(make_client, estate, clock):
    agent = await login(make_client, "agent")
    page = await agent.get("/p/EAST/hotline/intake")
    assert page.status_code == 200 and "漏水" in page.text

    found = await agent.get("/p/EAST/hotline/intake/customers", params={"lookup": "zhangsan"})
    assert "张三" in found.text
    by_unit = await agent.get("/p/EAST/hotline/intake/customers", params={"lookup": estate["units"][0].code})
    assert "张三" in by_unit.text

    created = await intake(agent, estate)
    assert created.status_code == 303
    order = await the_order()
    assert created.headers["location"] == f"/p/EAST/hotline/orders/{order.id}"
    assert order.number == "GD-2026-000001" and order.status == Status.NEW
    # 2 working hours after 16:00 on 30 September, then 8: across the National Day holiday (1–7 Oct).
    assert order.response_due == local(2026, 9, 30, 18, 0)
    assert order.resolution_due == local(2026, 10, 8, 16, 30)
    received = await outbox("received")
    assert [m.recipient for m in received] == ["zhang@example.com"] and "GD-2026-000001" in received[0].subject

    clock.at = local(2026, 9, 30, 16, 10)
    dispatched = await agent.form(f"/p/EAST/hotline/orders/{order.id}/dispatch", {
        "level": "2", "department": str(estate["engineering"].id), "instructions": "带上扳手",
    })
    assert dispatched.status_code == 303

    plumber = await login(make_client, "plumber")
    mine = await plumber.get("/p/EAST/hotline/mine")
    assert "GD-2026-000001" in mine.text
    clock.at = local(2026, 9, 30, 16, 30)
    assert (await plumber.form(f"/p/EAST/hotline/orders/{order.id}/start")).status_code == 303
    assert (await plumber.form(f"/p/EAST/hotline/orders/{order.id}/materials",
                               {"material": "密封圈", "quantity": "2", "unit_of_measure": "个"})).status_code == 303
    part = await Assignment.get(order_id=order.id)
    clock.at = local(2026, 9, 30, 17, 0)
    done = await plumber.form(f"/p/EAST/hotline/orders/{order.id}/assignments/{part.id}/done", {"report": "更换密封圈，已不漏"})
    assert done.status_code == 303
    order = await the_order()
    assert order.status == Status.DONE and order.responded_at == local(2026, 9, 30, 16, 30)
    assert "GD-2026-000001" not in (await plumber.get("/p/EAST/hotline/mine")).text

    queue = await agent.get("/p/EAST/hotline/callbacks")
    assert "GD-2026-000001" in queue.text
    task = await CallbackTask.get(order_id=order.id)
    assert task.due_at == local(2026, 10, 8, 9, 0)  # 24 h later is a holiday: the first working moment after it
    closing = await agent.form(f"/p/EAST/hotline/callbacks/{task.id}",
                               {"outcome": "satisfied", "comment": "业主确认已修好", "close": "1"})
    assert closing.status_code == 303
    # Sent again from a page left open (no outcome chosen): the form is gone, the alert says it is recorded.
    again = await agent.form(f"/p/EAST/hotline/callbacks/{task.id}", {"outcome": ""})
    assert again.status_code == 422 and translated("This callback has already been recorded.") in again.text
    order = await the_order()
    assert order.status == Status.CLOSED and order.closed_at is not None
    page = await agent.get(f"/p/EAST/hotline/orders/{order.id}")
    for text in ("Dispatched to 工程部", "Work started.", "更换密封圈，已不漏", "密封圈", "Customer satisfied.", "Closed.", "王客服", "刘师傅"):
        assert text in page.text, text
    assert [m.recipient for m in await outbox("closed")] == ["zhang@example.com"]


async def test_unsatisfied_callback_reopens_with_the_reason(make_client, estate, clock):
    agent = await login(make_client, "agent")
    await intake(agent, estate)
    order = await the_order()
    await agent.form(f"/p/EAST/hotline/orders/{order.id}/dispatch", {"department": str(estate["engineering"].id)})
    plumber = await login(make_client, "plumber")
    part = await Assignment.get(order_id=order.id)
    await plumber.form(f"/p/EAST/hotline/orders/{order.id}/assignments/{part.id}/done", {"report": "已处理"})
    task = await CallbackTask.get(order_id=order.id)
    call = await agent.get(f"/p/EAST/hotline/callbacks/{task.id}")
    assert call.status_code == 200 and "张三" in call.text and "Not satisfied" in call.text

    refused = await agent.form(f"/p/EAST/hotline/callbacks/{task.id}", {"outcome": "unsatisfied", "comment": " "})
    assert refused.status_code == 422 and "Write why the customer is not satisfied." in refused.text
    assert (await the_order()).status == Status.DONE
    assert (await CallbackTask.get(id=task.id)).status == TaskStatus.OPEN

    clock.at = local(2026, 10, 8, 10, 0)
    reopened = await agent.form(f"/p/EAST/hotline/callbacks/{task.id}", {"outcome": "unsatisfied", "comment": "还在漏水"})
    assert reopened.status_code == 303
    order = await the_order()
    assert order.status == Status.DISPATCHED and order.reopen_count == 1 and order.resolved_at is None
    assert order.resolution_due == local(2026, 10, 9, 10, 30)  # a fresh 8 working hours from the callback
    assert (await Assignment.get(order_id=order.id)).done_at is None
    assert "GD-2026-000001" in (await plumber.get("/p/EAST/hotline/mine")).text
    page = await agent.get(f"/p/EAST/hotline/orders/{order.id}")
    assert "Re-opened: 还在漏水" in page.text

    # Closing without a satisfied callback is refused, and nothing changes.
    close = await agent.form(f"/p/EAST/hotline/orders/{order.id}/close")
    assert close.status_code == 422 and "only after a callback found the customer satisfied" in close.text
    assert (await the_order()).status == Status.DISPATCHED


async def test_sla_warning_and_escalation_count_working_hours_only(make_client, estate, clock):
    agent = await login(make_client, "agent")
    await intake(agent, estate)
    order = await the_order()
    await agent.form(f"/p/EAST/hotline/orders/{order.id}/dispatch", {"department": str(estate["engineering"].id)})
    plumber = await login(make_client, "plumber")
    clock.at = local(2026, 9, 30, 16, 30)
    await plumber.form(f"/p/EAST/hotline/orders/{order.id}/start")

    async def watch(*at):
        run = await run_job_now("hotline.sla_watch", estate["east"].id, clock=Frozen(local(*at)))
        assert run.state == "done", run.error
        return await the_order()

    # During the National Day holiday the clock stands still: 6 working hours are left.
    order = await watch(2026, 10, 5, 12, 0)
    assert order.escalation_level == Escalation.NONE and order.resolution_warned_at is None
    order = await watch(2026, 10, 8, 15, 45)
    assert order.resolution_warned_at is not None and order.escalation_level == Escalation.NONE
    assert [m.recipient for m in await outbox("sla_warning")] == ["plumber@example.com"]

    order = await watch(2026, 10, 8, 16, 45)
    assert order.escalation_level == Escalation.SUPERVISOR
    assert [m.recipient for m in await outbox("escalated")] == ["boss@example.com"]
    # The manager hears of it 4 working hours after the supervisor: 16:45 + 1.25 h today, 2.75 h on Friday.
    order = await watch(2026, 10, 9, 11, 40)
    assert order.escalation_level == Escalation.SUPERVISOR
    order = await watch(2026, 10, 9, 11, 50)
    assert order.escalation_level == Escalation.MANAGER
    with unscoped():
        entries = [e.body for e in await timeline.history(order)]
    assert any(translated("Escalated to the supervisor") in body for body in entries)
    assert any(translated("Escalated to the manager") in body for body in entries)
    page = await agent.get(f"/p/EAST/hotline/orders/{order.id}")
    # Written by the escalation job, so in the estate's language.
    assert translated("Escalated to the manager") in page.text


async def test_deadlines_skip_the_weekend_but_count_the_adjusted_working_saturday(make_client, estate, clock):
    agent = await login(make_client, "agent")
    clock.at = local(2026, 10, 9, 17, 0)  # Friday; Saturday 10 Oct 2026 is a working day (调休)
    await intake(agent, estate)
    assert (await the_order()).response_due == local(2026, 10, 10, 10, 0)
    clock.at = local(2026, 10, 10, 17, 30)  # Saturday evening; Sunday is off
    await intake(agent, estate)
    friday = await the_order()
    assert friday.number == "GD-2026-000002" and friday.response_due == local(2026, 10, 12, 10, 30)
    clock.at = local(2026, 10, 10, 23, 0)  # emergencies count around the clock
    await intake(agent, estate, urgency="emergency")
    assert (await the_order()).response_due == local(2026, 10, 10, 23, 30)


async def test_department_staff_see_and_work_only_their_own_orders(make_client, estate, clock):
    agent = await login(make_client, "agent")
    await intake(agent, estate, subject="厨房漏水")
    leak = await the_order()
    await intake(agent, estate, subject="楼道垃圾未清")
    litter = await the_order()
    await agent.form(f"/p/EAST/hotline/orders/{leak.id}/dispatch", {"department": str(estate["engineering"].id)})
    await agent.form(f"/p/EAST/hotline/orders/{litter.id}/dispatch", {"department": str(estate["cleaning"].id)})

    plumber = await login(make_client, "plumber")
    mine = await plumber.get("/p/EAST/hotline/mine")
    assert "厨房漏水" in mine.text and "楼道垃圾未清" not in mine.text
    cleaner = await login(make_client, "cleaner")
    assert "楼道垃圾未清" in (await cleaner.get("/p/EAST/hotline/mine")).text

    part = await Assignment.get(order_id=litter.id)
    other = await plumber.form(f"/p/EAST/hotline/orders/{litter.id}/assignments/{part.id}/done", {"report": "x"})
    assert other.status_code == 403
    assert (await plumber.form(f"/p/EAST/hotline/orders/{litter.id}/start")).status_code == 403
    assert (await plumber.form(f"/p/EAST/hotline/orders/{leak.id}/dispatch", {"department": "1"})).status_code == 403
    assert (await the_order(litter.number)).status == Status.DISPATCHED

    # Level 3: a supervisor coordinates two departments; the order is done when both have reported.
    await intake(agent, estate, subject="外墙渗水影响楼道", kind="complaint")
    wall = await the_order()
    boss_id = (await make_user_id("boss"))
    both = await agent.form(f"/p/EAST/hotline/orders/{wall.id}/dispatch", {
        "level": "3", "department": [str(estate["engineering"].id), str(estate["cleaning"].id)], "supervisor": str(boss_id),
    })
    assert both.status_code == 303
    parts = {p.department_id: p for p in await Assignment.filter(order_id=wall.id)}
    await plumber.form(f"/p/EAST/hotline/orders/{wall.id}/assignments/{parts[estate['engineering'].id].id}/done", {"report": "补漏"})
    assert (await the_order(wall.number)).status == Status.DISPATCHED
    await cleaner.form(f"/p/EAST/hotline/orders/{wall.id}/assignments/{parts[estate['cleaning'].id].id}/done", {"report": "清理积水"})
    assert (await the_order(wall.number)).status == Status.DONE


async def make_user_id(username):
    from core.models import User

    return (await User.get(username=username)).id


async def test_bad_input_is_refused_next_to_the_field_and_changes_nothing(make_client, estate, clock):
    agent = await login(make_client, "agent")
    unknown = await intake(agent, estate, category="99999", unit="9-9-999", subject="")
    assert unknown.status_code == 422
    for message in ("Choose a category of this estate.", "There is no unit 9-9-999 in this estate.", "Write a short summary"):
        assert message in unknown.text
    foreign = await intake(agent, estate, category=str(estate["west_category"].id))
    assert foreign.status_code == 422 and "Choose a category of this estate." in foreign.text
    new_customer = await intake(agent, estate, customer_id="", new_name="", new_phone="")
    assert new_customer.status_code == 422 and "Enter the customer&#39;s name." in new_customer.text
    assert await the_order() is None

    await intake(agent, estate)
    order = await the_order()
    past = await agent.form(f"/p/EAST/hotline/orders/{order.id}/dispatch",
                            {"department": str(estate["engineering"].id), "due_at": "2026-09-29T10:00"})
    assert past.status_code == 422 and "The deadline must be in the future." in past.text
    several = await agent.form(f"/p/EAST/hotline/orders/{order.id}/dispatch",
                               {"department": [str(estate["engineering"].id), str(estate["cleaning"].id)]})
    assert several.status_code == 422 and "need a supervisor" in several.text
    assert (await the_order()).status == Status.NEW and not await Assignment.filter(order_id=order.id).exists()

    boss = await login(make_client, "boss")
    start = await boss.form(f"/p/EAST/hotline/orders/{order.id}/start")
    assert start.status_code == 422 and "cannot be started" in start.text
    reopen = await agent.form(f"/p/EAST/hotline/orders/{order.id}/reopen", {"reason": "再看看"})
    assert reopen.status_code == 422 and "cannot be re-opened" in reopen.text
    assert (await the_order()).status == Status.NEW


async def test_new_customer_on_the_spot_and_level_one_answer_confirmed_on_the_call(make_client, estate, clock):
    agent = await login(make_client, "agent")
    created = await intake(agent, estate, customer_id="", new_name="王五", new_phone="139 1234 5678", kind="consultation",
                           unit="", resolution="物业费可在服务中心或线上缴纳", confirmed="1")
    assert created.status_code == 303
    order = await the_order()
    with unscoped():
        customer = await Customer.get(id=order.customer_id)
    assert customer.name == "王五" and customer.name_pinyin == "wangwu"
    assert order.status == Status.CLOSED and order.first_contact_resolved and order.level == 1
    task = await CallbackTask.get(order_id=order.id)
    assert task.outcome == "satisfied" and task.status == TaskStatus.DONE

    await intake(agent, estate, resolution="已告知停水时间")  # answered, not confirmed: the callback decides
    unconfirmed = await the_order()
    assert unconfirmed.status == Status.DONE and not unconfirmed.first_contact_resolved
    assert (await CallbackTask.get(order_id=unconfirmed.id)).status == TaskStatus.OPEN


async def test_complaint_is_announced_to_other_plugins(make_client, estate, clock, monkeypatch):
    events = []

    async def record(name, project_id, actor_id=None, **data):
        events.append((name, project_id, data))

    monkeypatch.setattr(wo, "emit", record)
    agent = await login(make_client, "agent")
    await intake(agent, estate, kind="complaint", subject="保安态度恶劣")
    order = await the_order()
    [(name, project_id, data)] = events
    assert name == "hotline.complaint_received" and project_id == estate["east"].id
    assert data["work_order_id"] == order.id and data["customer_id"] == estate["zhang"].id
    assert data["subject"] == "保安态度恶劣" and data["unit_id"] == estate["units"][0].id


async def test_other_plugins_can_queue_callback_tasks(app, estate, clock):
    due = local(2026, 10, 12, 10, 0)
    [result] = await app.state.host.call(
        "callback_task_requested", enabled={"hotline"}, contain=False, project=estate["east"],
        customer_id=estate["zhang"].id, unit_id=estate["units"][0].id, reason="物业费欠缴 90 天，请电话催缴",
        due_at=due, source="fees.Bill:42",
    )
    task = await CallbackTask.get(id=result.value)
    assert task.order_id is None and task.phone == "+8613800138000" and task.due_at == due


async def test_other_estates_ids_and_disabled_module_answer_404(make_client, estate, clock, host):
    agent = await login(make_client, "agent")
    await intake(agent, estate)
    order = await the_order()
    task_due = local(2026, 10, 12, 10, 0)
    with unscoped():
        west_task = await wo.request_callback(estate["west"].id, customer_id=estate["li"].id, unit_id=None,
                                              reason="x", due_at=task_due, source="test")
    west = await login(make_client, "west_agent")
    assert (await west.get(f"/p/WEST/hotline/orders/{order.id}")).status_code == 404
    assert (await west.get(f"/p/EAST/hotline/orders/{order.id}")).status_code == 404
    assert (await west.form(f"/p/WEST/hotline/orders/{order.id}/dispatch", {"department": "1"})).status_code == 404
    assert (await agent.get(f"/p/EAST/hotline/callbacks/{west_task.id}")).status_code == 404

    quiet = await make_project("QUIET", host=host, modules=[])
    await make_user("quiet_agent", "agent", quiet)
    q = await login(make_client, "quiet_agent")
    assert (await q.get("/p/QUIET/hotline/")).status_code == 404
    assert (await q.get("/p/QUIET/hotline/intake")).status_code == 404


async def test_dashboard_search_customer_page_list_export_and_categories(make_client, estate, clock):
    agent = await login(make_client, "agent")
    await intake(agent, estate, kind="complaint", subject="保安态度恶劣")
    order = await the_order()

    dashboard = await agent.get("/p/EAST/")
    assert "Open work orders" in dashboard.text and "Work orders by category" in dashboard.text
    found = await agent.get("/search", params={"q": "GD-2026-000001"})
    assert f"/p/EAST/hotline/orders/{order.id}" in found.text
    customer = await agent.get(f"/p/EAST/customers/{estate['zhang'].id}")
    assert "GD-2026-000001" in customer.text
    listing = await agent.get("/p/EAST/hotline/", params={"kind": "complaint"})
    assert "保安态度恶劣" in listing.text
    export = await agent.get("/p/EAST/hotline/", params={"export": "csv"})
    assert export.status_code == 200 and "GD-2026-000001" in export.text

    boss = await login(make_client, "boss")
    assert (await agent.get("/p/EAST/hotline/categories")).status_code == 403
    bad = await boss.form("/p/EAST/hotline/categories/new", {
        "name": "燃气", "parent": str(estate["leak"].parent_id), "kind": "repair",
        **{f"{part}_{u}": "4" for part in ("response", "resolution") for u in ("low", "normal", "high", "emergency")},
        "response_high": "10", "resolution_high": "8", "resolution_low": "abc", "is_active": "1",
    })
    assert bad.status_code == 422
    assert "The response cannot be due after the resolution." in bad.text and "Enter hours between 0 and 8760" in bad.text
    assert not await Category.filter(name="燃气").exists()
    good = await boss.form("/p/EAST/hotline/categories/new", {
        "name": "燃气", "parent": str(estate["leak"].parent_id), "kind": "repair",
        **{f"{part}_{u}": "4" for part in ("response", "resolution") for u in ("low", "normal", "high", "emergency")},
        "response_emergency": "0.5", "is_active": "1",
    })
    assert good.status_code == 303
    gas = await Category.get(name="燃气")
    assert gas.sla["emergency"] == {"response": 0.5, "resolution": 4.0}
    assert "报修 › 燃气" in (await boss.get("/p/EAST/hotline/categories")).text
    edit = await boss.get(f"/p/EAST/hotline/categories/{gas.id}")
    assert edit.status_code == 200 and 'value="0.5"' in edit.text
    loop = await boss.form(f"/p/EAST/hotline/categories/{estate['leak'].parent_id}", {
        "name": "报修", "parent": str(estate["leak"].id), "kind": "repair",
        **{f"{part}_{u}": "4" for part in ("response", "resolution") for u in ("low", "normal", "high", "emergency")},
    })
    assert loop.status_code == 422 and "cannot sit under itself" in loop.text


async def test_due_callbacks_are_reminded_once_and_managers_get_the_daily_summary(make_client, estate, clock):
    agent = await login(make_client, "agent")
    await intake(agent, estate)
    order = await the_order()
    await agent.form(f"/p/EAST/hotline/orders/{order.id}/dispatch", {"department": str(estate["engineering"].id)})
    plumber = await login(make_client, "plumber")
    part = await Assignment.get(order_id=order.id)
    await plumber.form(f"/p/EAST/hotline/orders/{order.id}/assignments/{part.id}/done", {"report": "已修好"})

    async def run(name, *at):
        result = await run_job_now(name, estate["east"].id, clock=Frozen(local(*at)))
        assert result.state == "done", result.error

    await run("hotline.callback_reminders", 2026, 10, 7, 12, 0)  # due 8 Oct 09:00: not yet
    assert await outbox("callbacks_due") == []
    await run("hotline.callback_reminders", 2026, 10, 8, 9, 15)
    await run("hotline.callback_reminders", 2026, 10, 8, 9, 30)
    reminders = await outbox("callbacks_due")
    assert [m.recipient for m in reminders] == ["agent@example.com"]  # the agent who took the call, once

    await run("hotline.daily_summary", 2026, 10, 1, 8, 0)  # covers 30 September
    [summary] = await outbox("daily_summary")
    assert summary.recipient == "boss@example.com" and "2026-09-30" in summary.subject
    assert "Work orders received: 1" in summary.body_text and "Work done: 1" in summary.body_text


async def test_head_office_agent_chooses_the_estate_at_intake(make_client, estate, clock):
    await make_user("hq", "agent", None, display_name="总部热线")
    hq = await login(make_client, "hq")
    choose = await hq.get("/hotline/intake")
    assert choose.status_code == 200
    assert "/p/EAST/hotline/intake" in choose.text and "/p/WEST/hotline/intake" in choose.text
    created = await hq.form("/p/WEST/hotline/intake", {
        "customer_id": str(estate["li"].id), "channel": "phone", "kind": "consultation", "urgency": "low",
        "category": str(estate["west_category"].id), "subject": "咨询停车月卡",
    })
    assert created.status_code == 303
    order = await the_order()
    assert order.project_id == estate["west"].id and order.number == "GD-2026-000001"


async def test_two_dispatchers_at_once_dispatch_the_order_once(make_client, estate, clock):
    import asyncio

    agent = await login(make_client, "agent")
    await intake(agent, estate)
    order = await the_order()
    with unscoped():
        plans = [[wo.AssignmentPlan(estate[d], None, None)] for d in ("engineering", "cleaning")]
        outcomes = await asyncio.gather(*(wo.dispatch(order, p) for p in plans), return_exceptions=True)
        assert sorted(type(o).__name__ for o in outcomes) == ["WorkOrder", "WorkOrderError"]
        assert await Assignment.filter(order_id=order.id).count() == 1
        assert len([e for e in await timeline.history(order) if e.kind == "assign"]) == 1


async def test_a_refused_form_shows_its_error_under_that_form_only(make_client, estate, clock):
    agent = await login(make_client, "agent")
    await intake(agent, estate, subject="外墙渗水影响楼道", kind="complaint")
    wall = await the_order()
    boss_id = await make_user_id("boss")
    await agent.form(f"/p/EAST/hotline/orders/{wall.id}/dispatch", {
        "level": "3", "department": [str(estate["engineering"].id), str(estate["cleaning"].id)], "supervisor": str(boss_id),
    })
    first, second = await Assignment.filter(order_id=wall.id).order_by("id")
    # The supervisor sees a "mark done" form for each department's part; the empty report was the first one's.
    boss = await login(make_client, "boss")
    refused = await boss.form(f"/p/EAST/hotline/orders/{wall.id}/assignments/{first.id}/done", {"report": " "})
    assert refused.status_code == 422
    assert f'id="f-report-{first.id}"' in refused.text and f'id="f-report-{second.id}"' in refused.text
    assert refused.text.count("Write what was done.") == 1
    assert f'id="f-report-{first.id}-error"' in refused.text and f'id="f-report-{second.id}-error"' not in refused.text

    # A form the page no longer offers (re-opening a new order): its message shows in the page's alert.
    await intake(agent, estate)
    fresh = await the_order()
    reopen = await agent.form(f"/p/EAST/hotline/orders/{fresh.id}/reopen", {"reason": ""})
    assert reopen.status_code == 422 and 'name="reason"' not in reopen.text
    assert "Write why the work order is re-opened." in reopen.text
