"""Demo work orders: a Chinese category tree and orders in every state, with their history."""

from __future__ import annotations

from datetime import timedelta

from core.api import Customer, Department, Membership, Unit
from plugins.hotline import workorders as wo
from plugins.hotline.models import CallbackTask, Category, ContactChannel, Kind, Outcome, TaskStatus

# (top level, kind, children)
TREE = [
    ("报修", Kind.REPAIR, ["水电维修", "门窗五金", "电梯故障", "公共设施"]),
    ("投诉", Kind.COMPLAINT, ["服务态度", "噪音扰民", "环境卫生", "房屋质量"]),
    ("咨询", Kind.CONSULTATION, ["物业费", "装修手续", "停车管理"]),
    ("建议", Kind.SUGGESTION, ["社区活动", "绿化改善"]),
    ("表扬", Kind.PRAISE, []),
]

# (category, kind, urgency, subject, department kind, how far it got)
REQUESTS = [
    ("水电维修", Kind.REPAIR, "high", "厨房水管漏水，楼下天花板渗水", "engineering", "closed"),
    ("电梯故障", Kind.REPAIR, "emergency", "电梯停在两层之间，有人被困", "engineering", "closed"),
    ("门窗五金", Kind.REPAIR, "normal", "入户门锁芯松动，钥匙难以转动", "engineering", "done"),
    ("公共设施", Kind.REPAIR, "normal", "地下车库B区照明灯不亮", "engineering", "in_progress"),
    ("水电维修", Kind.REPAIR, "normal", "卫生间地漏返味", "engineering", "dispatched"),
    ("环境卫生", Kind.COMPLAINT, "normal", "楼道垃圾两天未清运", "cleaning", "reopened"),
    ("噪音扰民", Kind.COMPLAINT, "high", "楼上装修周末早上七点施工", "security", "dispatched"),
    ("服务态度", Kind.COMPLAINT, "normal", "门岗保安态度生硬", "security", "new"),
    ("房屋质量", Kind.COMPLAINT, "high", "客厅外墙雨后渗水", "engineering", "overdue"),
    ("物业费", Kind.CONSULTATION, "low", "咨询物业费线上缴纳方式", None, "fcr"),
    ("装修手续", Kind.CONSULTATION, "low", "装修需要办理哪些手续", None, "fcr"),
    ("停车管理", Kind.CONSULTATION, "normal", "月租车位续费及价格", None, "answered"),
    ("社区活动", Kind.SUGGESTION, "low", "建议周末组织亲子活动", None, "new"),
    ("绿化改善", Kind.SUGGESTION, "low", "小区东门绿化带缺少座椅", None, "new"),
    ("表扬", Kind.PRAISE, "low", "表扬工程部老张维修及时", None, "fcr"),
]


async def _staff(project, role: str):
    membership = await Membership.filter(project_id=project.id, role__code=role).select_related("user").first()
    return membership.user if membership else None


async def load(project, rng) -> None:
    categories: dict[str, Category] = {}
    for name, kind, children in TREE:
        parent = await Category.create(project=project, name=name, kind=kind)
        categories[name] = parent
        for child in children:
            categories[child] = await Category.create(project=project, name=child, parent=parent, kind=kind)
    agent, staff, manager = await _staff(project, "agent"), await _staff(project, "staff"), await _staff(project, "manager")
    departments = {d.kind: d for d in await Department.filter(project_id=project.id)}
    customers = await Customer.filter(project_id=project.id).prefetch_related("unit_links").limit(200)
    now = wo.now()
    for index, (category, kind, urgency, subject, department, stage) in enumerate(REQUESTS):
        customer = rng.choice(customers)
        links = list(customer.unit_links)
        unit = await Unit.get(id=links[0].unit_id) if links else None
        # Spread over the last three weeks; the overdue one is older than its deadline on purpose.
        at = now - timedelta(days=rng.randint(1, 20), hours=rng.randint(0, 6)) if stage != "new" else now - timedelta(hours=index)
        order = await wo.create_order(project, wo.Intake(
            customer=customer, category=categories[category], kind=kind, urgency=urgency,
            channel=rng.choice(list(ContactChannel.CHOICES)), subject=subject, unit=unit,
        ), author=agent, at=at)
        if stage == "new":
            continue
        if stage in ("fcr", "answered"):
            await wo.resolve_on_spot(order, "已在电话中解答：" + subject, customer_confirmed=stage == "fcr",
                                     author=agent, at=at + timedelta(minutes=5))
            continue
        await wo.dispatch(order, [wo.AssignmentPlan(departments.get(department), staff if department == "engineering" else None,
                                                    None, "请尽快上门处理")], author=agent, at=at + timedelta(minutes=10))
        if stage in ("dispatched", "overdue"):
            continue
        await wo.start(order, author=staff, at=at + timedelta(hours=1))
        if stage == "in_progress":
            await wo.add_material(order, "LED灯管", "4", "根", author=staff)
            continue
        part = (await order.assignments.all())[0]
        await wo.complete_assignment(part, "已上门处理完毕，业主现场确认", author=staff, at=at + timedelta(hours=3))
        if stage == "done":
            continue
        task = await CallbackTask.get(order_id=order.id, status=TaskStatus.OPEN)
        verdict = Outcome.UNSATISFIED if stage == "reopened" else Outcome.SATISFIED
        await wo.record_callback(task, verdict, "仍有问题，要求再次处理" if verdict == Outcome.UNSATISFIED else "业主表示满意",
                                 author=manager or agent, at=at + timedelta(days=1))
