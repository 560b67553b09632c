"""The demo estate group loaded by `run.py demo`: two estates that look alive."""

from __future__ import annotations

import random
from datetime import date
from decimal import Decimal

from core.accounts import create_user
from core.db import transaction
from core.models import Building, Department, Project, ProjectModule, Unit, UnitUse
from core.people import create_customer, link_unit
from core.plugins import PluginHost
from core.scope import unscoped

DEMO_PASSWORD = "demo1234"

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤"
GIVEN = "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超秀兰霞平刚桂英文华建国志红玉兰海燕春梅晓东浩然子涵欣怡宇轩梓萱思远嘉怡一诺"

ESTATES = [
    {"code": "CUIHU", "name": "翠湖花园", "address": "上海市浦东新区翠湖路88号", "buildings": 4, "theme": "default"},
    {"code": "JINXIU", "name": "锦绣江南", "address": "杭州市西湖区锦绣大道168号", "buildings": 3, "theme": "harbour"},
]


def _name(rng: random.Random) -> str:
    given = "".join(rng.choice(GIVEN) for _ in range(rng.choice((1, 2))))
    return rng.choice(SURNAMES) + given


def _phone(rng: random.Random) -> str:
    return f"1{rng.choice('3589')}{rng.randint(0, 9)}{rng.randint(10000000, 99999999)}"


async def _estate(spec: dict, host: PluginHost, rng: random.Random, modules: list[str]) -> Project:
    from core.templating import list_themes

    theme = spec["theme"] if spec["theme"] in list_themes() else "default"
    project = await Project.create(code=spec["code"], name=spec["name"], address=spec["address"], theme=theme)
    for name in modules:
        await ProjectModule.create(project=project, module=name, enabled=True)
    for kind, name in (("engineering", "工程部"), ("cleaning", "保洁部"), ("security", "安保部"), ("finance", "财务部"), ("service", "客服部")):
        await Department.create(project=project, name=name, kind=kind)
    for b in range(1, spec["buildings"] + 1):
        building = await Building.create(project=project, code=str(b), name=f"{b}栋", floors=18)
        for entrance in (1, 2):
            for floor in range(2, 20, 2):
                for room in (1, 2):
                    code = f"{b}-{entrance}-{floor}{room:02d}"
                    area = Decimal(rng.choice(("89.50", "96.00", "112.30", "128.75", "143.20")))
                    unit = await Unit.create(
                        project=project, building=building, code=code, floor=floor, area=area,
                        use=UnitUse.RESIDENTIAL, layout=rng.choice(("2室1厅", "3室2厅", "4室2厅")),
                    )
                    if rng.random() < 0.9:
                        owner = await create_customer(
                            project, _name(rng), [_phone(rng)],
                            email=f"owner{unit.id}@example.com" if rng.random() < 0.5 else "",
                            id_number=f"3101{rng.randint(10**13, 10**14 - 1)}",
                        )
                        await link_unit(owner, unit, "owner", date(2024, rng.randint(1, 12), rng.randint(1, 28)))
                        if rng.random() < 0.3:
                            family = await create_customer(project, owner.name[0] + _name(rng)[1:], [_phone(rng)])
                            await link_unit(family, unit, "family")
    return project


async def load_demo(host: PluginHost, seed: int = 20261123) -> list[tuple[str, str]]:
    """Create the demo estates unless any project exists; return (username, description) logins."""
    with unscoped():
        if await Project.all().exists():
            return []
        rng = random.Random(seed)
        modules = [p.name for p in host.toggleable()]
        logins: list[tuple[str, str]] = []
        async with transaction():
            projects = [await _estate(spec, host, rng, modules) for spec in ESTATES]
            await create_user("admin", DEMO_PASSWORD, display_name="系统管理员", role="admin", email="admin@example.com")
            logins.append(("admin", "head-office administrator (all estates)"))
            await create_user("hotline", DEMO_PASSWORD, display_name="总部热线 小周", role="agent", extension="8001")
            logins.append(("hotline", "head-office hotline agent (all estates), extension 8001"))
            for project, prefix in zip(projects, ("ch", "jx")):
                engineering = await Department.get(project=project, kind="engineering")
                for role, label, name in (
                    ("manager", "manager", "主管 李经理"),
                    ("agent", "front desk", "前台 小王"),
                    ("staff", "engineering staff", "工程部 老张"),
                    ("cashier", "cashier", "收银 小陈"),
                    ("readonly", "read-only", "查询 小赵"),
                ):
                    username = f"{prefix}_{role}"
                    await create_user(
                        username, DEMO_PASSWORD, display_name=name, role=role, project=project,
                        email=f"{username}@example.com",
                        department=engineering if role == "staff" else None,
                    )
                    logins.append((username, f"{label} of {project.name}"))
            for project in projects:
                enabled = set(modules)
                await host.call("demo_data", enabled=enabled, contain=False, project=project, rng=rng)
        return logins
