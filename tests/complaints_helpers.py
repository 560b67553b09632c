"""Shared set-up of the complaints tests: two estates, staff, categories, a frozen clock."""

from __future__ import annotations

from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import pytest

from core.api import Department, unscoped
from core.people import create_customer, link_unit
from core.testing import make_project, make_units, make_user
from plugins.complaints import cases as svc
from plugins.complaints.models import Case, Category, Classification, DefectType

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
    frozen = Frozen(local(2026, 3, 2, 10, 0))  # a Monday morning
    monkeypatch.setattr(svc, "clock", frozen)
    return frozen


@pytest.fixture
async def estate(app, host, clock):
    east = await make_project("EAST", host=host)
    west = await make_project("WEST", host=host)
    with unscoped():
        engineering = await Department.create(project=east, name="工程部", kind="engineering")
        service = await Department.create(project=east, name="客服部", kind="service")
        quality = await Category.create(project=east, name="房屋质量", classification=Classification.PRODUCT_QUALITY)
        leak = await Category.create(project=east, name="渗漏水", parent=quality,
                                     classification=Classification.PRODUCT_QUALITY, defect=DefectType.LEAK)
        crack = await Category.create(project=east, name="墙体裂缝", parent=quality,
                                      classification=Classification.PRODUCT_QUALITY, defect=DefectType.CRACK)
        attitude = await Category.create(project=east, name="服务态度", classification=Classification.SERVICE_ATTITUDE)
        west_leak = await Category.create(project=west, name="漏水", classification=Classification.PRODUCT_QUALITY,
                                          defect=DefectType.LEAK)
        units = await make_units(east, 3)
        west_units = await make_units(west, 1)
        zhang = await create_customer(east, "张三", ["13800138000"], email="zhang@example.com", locale="zh_CN")
        await link_unit(zhang, units[0])
        lily = await create_customer(east, "Lily Chen", ["13900139001"], email="lily@example.com", locale="en")
        await link_unit(lily, units[1])
        li = await create_customer(west, "李四", ["13900139000"], email="li@example.com")
        await link_unit(li, west_units[0])
    await make_user("agent", "agent", east, display_name="王客服", email="agent@example.com")
    await make_user("fixer", "staff", east, display_name="刘工", email="fixer@example.com", department=engineering)
    await make_user("boss", "manager", east, display_name="赵经理", email="boss@example.com")
    await make_user("hq", "manager", None, display_name="总部品质部 孙总", email="hq@example.com")
    await make_user("west_boss", "manager", west, email="west@example.com")
    return {
        "east": east, "west": west, "engineering": engineering, "service": service, "leak": leak, "crack": crack,
        "attitude": attitude, "west_leak": west_leak, "units": units, "west_units": west_units, "zhang": zhang,
        "lily": lily, "li": li,
    }


async def login(make_client, username):
    c = make_client()
    await c.login(username)
    return c


async def latest_case() -> Case:
    with unscoped():
        return await Case.all().order_by("-id").first()


async def open_case(estate, *, customer="zhang", unit=0, category=None, subject="卫生间渗水", severity="normal", at=None):
    """A case opened through the service (for tests about what happens later)."""
    project = estate["east"]
    with unscoped():
        return await svc.open_case(project, svc.Intake(
            customer=estate[customer], unit=estate["units"][unit] if unit is not None else None, channel="phone",
            subject=subject, description="楼下天花板滴水", category=estate[category] if category else None,
            severity=severity,
        ), at=at)


STEP_FORMS = {
    "recorded": lambda e: {"category": str(e["leak"].id), "description": "主卧卫生间楼板渗水到楼下", "contact": "晚上七点后"},
    "assessed": lambda e: {"severity": "serious", "department": str(e["engineering"].id)},
    "informed": lambda e: {"promised_reply_at": "2026-03-04T17:00", "note": "已电话告知"},
    "investigated": lambda e: {"facts": "防水层破损，照片已上传", "interviews": "施工单位承认返修"},
    "analysed": lambda e: {"root_cause": "construction", "responsible_party": "contractor", "responsible_name": "某建工",
                           "cause_detail": "防水层施工未按规范"},
    "proposed": lambda e: {"solution": "重做防水并赔偿楼下吊顶", "compensation": "800"},
    "agreed": lambda e: {"opinion": "accepts"},
    "implemented": lambda e: {"implementation": "防水已重做，闭水试验48小时合格"},
    "followed_up": lambda e: {"follow_up": "一周后回访，无渗漏"},
    "closed": lambda e: {"summary": "防水施工工序需加强验收"},
}


async def walk(case: Case, estate, until: str, clock=None, author=None):
    """Complete every step of `case` up to `until` through the service."""
    from plugins.complaints.models import Step

    with unscoped():
        for step in Step.ORDER[Step.ORDER.index(case.step) + 1: Step.ORDER.index(until) + 1]:
            form = STEP_FORMS[step](estate)
            if step == "recorded" and case.category_id:  # keep the category chosen at receipt
                form["category"] = str(case.category_id)
            case = await svc.complete_step(case, step, form, author=author)
    return case
