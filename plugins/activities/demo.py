"""Demo data: a club with levels and members, a past activity with feedback, an upcoming one with a
waitlist, a group-wide owners' gala hosted by the first demo estate and open to the next ones, and a
return-visit plan with a call list half done."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

from core.api import Customer, CustomerUnit, Relation, now, unscoped
from plugins.activities import registration as reg, sharing, timeutil, visits
from plugins.activities.models import Activity, ActivityStatus, Club, Member, MemberLevel, VisitPlan

GALA = "集团业主答谢晚会"

COMMENTS = ["活动组织得很好,孩子很开心", "希望下次时间安排在周末上午", "场地有点小", "工作人员很热情", ""]
SAID = ["对物业服务满意", "希望加强夜间巡逻", "电梯偶尔有异响", "建议增加儿童游乐设施", "绿化维护得不错"]


async def load(project, rng) -> None:
    at = now()
    await Club.create(project_id=project.id, points_enabled=True, points_per_attendance=10)
    levels = [await MemberLevel.create(project_id=project.id, name=name, rank=rank, min_points=points)
              for name, rank, points in (("普通会员", 0, 0), ("银卡会员", 1, 200), ("金卡会员", 2, 500))]
    owner_ids = await CustomerUnit.filter(project_id=project.id, relation=Relation.OWNER).values_list("customer_id", flat=True)
    owners = await Customer.filter(id__in=list(owner_ids)).order_by("id")
    members = [c for c in owners if rng.random() < 0.45]
    for n, customer in enumerate(members, 1):
        await Member.create(
            project_id=project.id, customer_id=customer.id, number=f"{n:06d}", level=rng.choice(levels),
            joined_on=date(2025, rng.randint(1, 12), rng.randint(1, 28)), consent_to_contact=rng.random() < 0.8,
            points=rng.randint(0, 600),
        )
    if not owners:
        return

    past_start = at - timedelta(days=12)
    past = await Activity.create(
        project_id=project.id, title="中秋亲子游园会", place="中心花园", description="猜灯谜、做月饼、亲子游戏。",
        starts_at=past_start, ends_at=past_start + timedelta(hours=3), capacity=40, max_family=3,
        status=ActivityStatus.PUBLISHED,
    )
    for customer in owners[:18]:
        registration = await reg.register(past, customer, rng.randint(0, 2), at=past_start - timedelta(days=5))
        if registration.status == "confirmed" and rng.random() < 0.85:
            await reg.check_in(registration, at=past_start + timedelta(minutes=rng.randint(0, 40)))
            if rng.random() < 0.7:
                registration.rating = rng.choice((3, 4, 4, 5, 5, 5))
                registration.comment = rng.choice(COMMENTS)
                registration.feedback_sent_at = past_start + timedelta(hours=4)
                registration.feedback_at = past_start + timedelta(days=1)
                await registration.save(update_fields=["rating", "comment", "feedback_sent_at", "feedback_at"])

    soon = at + timedelta(days=9)
    upcoming = await Activity.create(
        project_id=project.id, title="业主茶话会", place="会所多功能厅", description="与管理处面对面交流社区事务。",
        starts_at=soon, ends_at=soon + timedelta(hours=2), capacity=12, max_family=1, cost=Decimal("0"),
        status=ActivityStatus.PUBLISHED, members_only=True,
    )
    for customer in members[:10]:
        await reg.register(upcoming, customer, rng.randint(0, 1), at=at)
    await _gala(project, members, at)
    later = at + timedelta(days=30)
    await Activity.create(
        project_id=project.id, title="周末插花课", place="会所二楼", starts_at=later, ends_at=later + timedelta(hours=2),
        capacity=15, cost=Decimal("50.00"), status=ActivityStatus.DRAFT,
    )

    today = timeutil.today(project.timezone, at)
    plan = await VisitPlan.create(
        project_id=project.id, name="业主半年回访", interval_months=6, next_run_on=today - timedelta(days=10),
        script="1. 对物业服务是否满意? 2. 家中设施有无问题? 3. 对社区活动有何建议?",
    )
    visit_round = await visits.generate_round(plan, at=at - timedelta(days=10))
    if visit_round is None:
        return
    from plugins.activities.models import Visit

    for visit in await Visit.filter(round_id=visit_round.id).order_by("id"):
        if rng.random() < 0.5:
            outcome = rng.choice(("satisfied", "satisfied", "suggestion", "problem"))
            await visits.record_visit(visit, outcome=outcome, said=rng.choice(SAID), by=visit.agent_id,
                                      at=at - timedelta(days=rng.randint(1, 9)))


async def _gala(project, members, at) -> None:
    """The group's gala: hosted by the first estate that loads, the others are invited to share its seats."""
    with unscoped():
        host = await Activity.filter(title=GALA, host_activity_id=None).exclude(project_id=project.id).first()
    if host is None:
        starts = at + timedelta(days=20)
        row = await Activity.create(
            project_id=project.id, title=GALA, place="集团会所宴会厅", description="集团各项目业主联谊,抽奖与文艺表演。",
            starts_at=starts, ends_at=starts + timedelta(hours=3), capacity=30, max_family=1,
            status=ActivityStatus.PUBLISHED, members_only=True,
        )
    else:
        await sharing.set_guests(host, {project.id}, {project.id})
        row = await Activity.get(host_activity_id=host.id, project_id=project.id)
    for customer in members[:6]:
        await reg.register(row, customer, 1, at=at)
