"""Demo complaint cases: a Chinese category tree and cases at every step of the procedure, with history."""

from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo

from core.api import Customer, Department, Membership, Unit
from plugins.complaints import cases as svc
from plugins.complaints.models import Category, Channel, Classification, DefectType, Party, RootCause, Severity, Step, Survey

# (name, classification, defect, children as (name, defect))
TREE = [
    ("房屋质量", Classification.PRODUCT_QUALITY, "", [
        ("墙体裂缝", DefectType.CRACK), ("渗漏水", DefectType.LEAK), ("空鼓", DefectType.HOLLOW),
        ("门窗质量", DefectType.WINDOW_DOOR), ("给排水", DefectType.PLUMBING),
    ]),
    ("服务态度", Classification.SERVICE_ATTITUDE, "", [("客服人员", ""), ("保安人员", "")]),
    ("延期交付", Classification.DELIVERY_DELAY, "", []),
    ("物业服务", Classification.PROPERTY_SERVICES, "", [("环境卫生", ""), ("停车管理", ""), ("噪音扰民", "")]),
    ("其他", Classification.OTHER, "", []),
]

# (category, severity, channel, subject, description, department kind, steps done, root cause, party, survey score)
CASES = [
    ("渗漏水", Severity.SERIOUS, Channel.PHONE, "主卧飘窗雨后渗水", "连续两场大雨后主卧飘窗下沿渗水，墙纸起鼓发霉。",
     "engineering", Step.CLOSED, RootCause.CONSTRUCTION, Party.CONTRACTOR, 4),
    ("墙体裂缝", Severity.NORMAL, Channel.VISIT, "客厅墙面出现多条裂缝", "入住半年，客厅与阳台交接处出现三条斜向裂缝。",
     "engineering", Step.CLOSED, RootCause.MATERIAL, Party.CONTRACTOR, 2),
    ("服务态度", Severity.MINOR, Channel.PHONE, "前台客服接待态度冷淡", "业主办理装修手续时，前台人员不耐烦、未解释清楚流程。",
     "service", Step.CLOSED, RootCause.SERVICE, Party.PROPERTY, 5),
    ("渗漏水", Severity.SERIOUS, Channel.ONLINE, "卫生间楼板渗水到楼下", "楼下住户反映卫生间天花板滴水，疑似本户防水层破损。",
     "engineering", Step.IMPLEMENTED, RootCause.CONSTRUCTION, Party.CONTRACTOR, None),
    ("延期交付", Severity.CRITICAL, Channel.LETTER, "交房时间比合同约定延迟两个月", "业主联名来函，要求按合同支付延期交付违约金。",
     "service", Step.PROPOSED, RootCause.MANAGEMENT, Party.DEVELOPER, None),
    ("空鼓", Severity.NORMAL, Channel.PHONE, "厨房墙砖大面积空鼓", "敲击厨房墙砖有空响，两块已经脱落。",
     "engineering", Step.ANALYSED, RootCause.CONSTRUCTION, Party.CONTRACTOR, None),
    ("噪音扰民", Severity.NORMAL, Channel.PHONE, "地下车库排风机夜间噪音大", "夜里十一点后排风机仍在运转，低楼层住户无法入睡。",
     "engineering", Step.INVESTIGATED, None, None, None),
    ("门窗质量", Severity.MINOR, Channel.EMAIL, "阳台推拉门关不严", "推拉门关闭后仍有缝隙，冬天漏风。",
     "engineering", Step.INFORMED, None, None, None),
    ("保安人员", Severity.NORMAL, Channel.VISIT, "门岗保安拒绝访客车辆进入", "访客已登记，保安仍拒绝放行并言语不当。",
     "security", Step.ASSESSED, None, None, None),
    ("环境卫生", Severity.MINOR, Channel.ONLINE, "垃圾分类点异味严重", "3号楼旁垃圾分类点夏季异味大，清运不及时。",
     "cleaning", Step.RECORDED, None, None, None),
    ("给排水", Severity.SERIOUS, Channel.PHONE, "厨房下水道反复堵塞", "一个月内第三次堵塞，怀疑主管道坡度不够。",
     "engineering", Step.RECEIVED, None, None, None),
]


async def load(project, rng) -> None:
    categories: dict[str, Category] = {}
    for name, classification, defect, children in TREE:
        parent = await Category.create(project=project, name=name, classification=classification, defect=defect)
        categories[name] = parent
        for child, child_defect in children:
            categories[child] = await Category.create(project=project, name=child, parent=parent,
                                                      classification=classification, defect=child_defect)
    membership = await Membership.filter(project_id=project.id, role__code="manager").select_related("user").first()
    manager = membership.user if membership else None
    departments = {d.kind: d for d in await Department.filter(project_id=project.id)}
    customers = await Customer.filter(project_id=project.id).prefetch_related("unit_links").limit(200)
    if not customers:
        return
    now = svc.now()
    zone = ZoneInfo(project.timezone)
    for index, (category, severity, channel, subject, description, department, last, cause, party, score) in enumerate(CASES):
        customer = rng.choice(customers)
        unit_links = list(customer.unit_links)
        unit = await Unit.get(id=unit_links[0].unit_id) if unit_links else None
        # Closed cases lie weeks back, the newest ones only hours: the dashboard shows both ages.
        at = now - timedelta(days=(len(CASES) - index) * 3, hours=rng.randint(1, 8))
        case = await svc.open_case(project, svc.Intake(
            customer=customer, unit=unit, channel=channel, subject=subject, description=description,
            category=categories[category], severity=severity,
        ), author=manager, at=at)
        dept = departments.get(department) or next(iter(departments.values()), None)
        forms = {
            Step.RECORDED: {"category": str(categories[category].id), "description": description,
                            "contact": "工作日白天来电"},
            Step.ASSESSED: {"severity": severity, "department": str(dept.id) if dept else ""},
            Step.INFORMED: {"promised_reply_at": (at + timedelta(days=2)).astimezone(zone).replace(tzinfo=None)
                            .isoformat(timespec="minutes"), "note": "已致电业主，承诺两个工作日内答复。"},
            Step.INVESTIGATED: {"facts": "现场查看并拍照取证，问题属实。", "interviews": "已询问施工单位现场负责人。"},
            Step.ANALYSED: {"root_cause": cause or RootCause.OTHER, "responsible_party": party or Party.OTHER,
                            "cause_detail": "经工程部与监理共同分析确认。"},
            Step.PROPOSED: {"solution": "由责任单位免费维修，并赠送一个月物业费作为补偿。", "compensation": "300"},
            Step.AGREED: {"opinion": "accepts", "customer_opinion": "业主同意维修方案。"},
            Step.IMPLEMENTED: {"implementation": "已完成维修，业主现场验收。"},
            Step.FOLLOWED_UP: {"follow_up": "一周后回访，问题未再出现，业主表示满意。"},
            Step.CLOSED: {"summary": "问题已解决；已将缺陷反馈总部，后续项目加强该工序验收。"},
        }
        for number, step in enumerate(Step.ORDER[1:Step.ORDER.index(last) + 1], 1):
            if step == Step.ASSESSED and dept is None:
                break
            case = await svc.complete_step(case, step, forms[step], author=manager, at=at + timedelta(hours=number * 5))
        if score is not None:
            answered = case.closed_at + timedelta(days=4)
            await Survey.create(project=project, case=case, email=customer.email or "demo@example.com",
                                sent_at=case.closed_at + timedelta(days=3), expires_at=answered + timedelta(days=30),
                                answered_at=answered, score=score,
                                comment="处理及时，态度很好。" if score >= 4 else "维修后又出现了，希望彻底解决。")
