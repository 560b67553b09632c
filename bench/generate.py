#!/usr/bin/env python3
"""Synthetic data for an estate group, loaded in bulk into Courtyard's own tables.

    .venv/bin/python bench/generate.py --scale small                # PostgreSQL database courtyard_bench_small
    .venv/bin/python bench/generate.py --scale ci --db sqlite:///tmp/bench.sqlite3
    .venv/bin/python bench/generate.py --scale full                 # 200 estates, 500,000 units, ~20M bill lines

What it makes, per estate (numbers for --scale full):

* core: estates with every module on, departments, buildings and units
  (residential towers, parking, shops; 500,000 units), customers with pinyin
  keys, phones and ID numbers (~1,000,000), owner/family/tenant links with
  dates (including former owners), staff of every role and head-office
  agents with PBX extensions;
* hotline: the category tree, ~2,000,000 work orders over the history in
  every state (numbered per estate and year), their assignments, callback
  tasks and timeline entries, a month of calls, one signed head-office PBX
  integration for the screen-pop benchmark;
* fees: fee items and rates, a bill for every unit and month of history
  (~10,000,000 bills, ~20,000,000 lines) numbered per estate, payments by
  household habit (monthly, quarterly, late, partial, never) with their
  allocations, the bill runs of those months, the number sequences;
* complaints, handover, activities: each plugin's own demo records
  (`demo_data` hook) in the smallest estates, so every list page has rows.

Rows go in with COPY on PostgreSQL (keys, indexes and foreign keys are taken
off the big tables during the load and put back afterwards, which checks every
constraint) and with executemany on SQLite (foreign keys checked at the end).
Everything is derived from one seed: the same scale gives the same data.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import date, datetime, time as dtime, timedelta, timezone
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlparse
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("COURTYARD_NO_BOOTSTRAP", "1")

from bench.loader import PostgresSink, Sink, SqliteSink, asyncpg_dsn  # noqa: E402

PASSWORD = "bench-pass-1"
PBX_SECRET = "bench-pbx-secret-0123456789abcdef"
PBX_NAME = "Benchmark 400 line"
ZONE_NAME = "Asia/Shanghai"
ZONE = ZoneInfo(ZONE_NAME)
PG_SERVER = os.environ.get("COURTYARD_BENCH_PG", "postgres://postgres@127.0.0.1:5432/postgres")


@dataclass(frozen=True)
class Scale:
    estates: int
    units: int
    months: int  # months of bills before the current one
    orders_per_unit: float
    demo_estates: int  # estates that also get the complaints/handover/activities demo records


SCALES = {
    "ci": Scale(estates=2, units=240, months=3, orders_per_unit=2.5, demo_estates=1),
    "small": Scale(estates=8, units=8_000, months=12, orders_per_unit=4, demo_estates=2),
    "medium": Scale(estates=40, units=100_000, months=21, orders_per_unit=4.6, demo_estates=2),
    "full": Scale(estates=200, units=500_000, months=21, orders_per_unit=4.6, demo_estates=2),
}

ESTATE_WORDS = ["翠湖", "锦绣", "金地", "碧水", "阳光", "滨江", "绿城", "香樟", "龙湖", "保利", "中海", "华润",
                "世纪", "东方", "星河", "书香", "御景", "枫林", "海棠", "紫薇"]
ESTATE_KINDS = ["花园", "公馆", "家园", "名苑", "雅苑", "华庭", "新城", "水岸", "府", "天地"]
CITIES = [("上海市", "浦东新区"), ("杭州市", "西湖区"), ("南京市", "鼓楼区"), ("苏州市", "工业园区"), ("成都市", "高新区"),
          ("武汉市", "江汉区"), ("广州市", "天河区"), ("深圳市", "南山区")]
LAYOUTS = [("2室1厅", "89.50"), ("3室2厅", "112.30"), ("3室2厅", "128.75"), ("4室2厅", "143.20"), ("2室2厅", "96.00")]
DEPARTMENTS = [("engineering", "工程部"), ("cleaning", "保洁部"), ("security", "安保部"), ("finance", "财务部"), ("service", "客服部")]
STAFF = [("manager", "主管"), ("agent", "前台"), ("agent", "前台"), ("staff", "工程部"), ("staff", "保洁部"),
         ("cashier", "收银"), ("readonly", "查询")]
HEAD_OFFICE_AGENTS = 8

# (top level, kind, [(child, department kind, subjects)])
CATEGORIES = [
    ("报修", "repair", [
        ("水电维修", "engineering", ["厨房水管漏水", "卫生间地漏返味", "插座跳闸没电", "热水器无法点火"]),
        ("门窗五金", "engineering", ["入户门锁芯松动", "窗户关不严漏风", "阳台推拉门卡住"]),
        ("电梯故障", "engineering", ["电梯按键失灵", "电梯运行有异响"]),
        ("公共设施", "engineering", ["地下车库照明不亮", "单元门禁刷卡无反应", "楼道声控灯不亮"]),
    ]),
    ("投诉", "complaint", [
        ("服务态度", "service", ["门岗保安态度生硬", "前台接待不耐烦"]),
        ("噪音扰民", "security", ["楼上装修周末早上施工", "夜间广场舞音响太大"]),
        ("环境卫生", "cleaning", ["楼道垃圾未及时清运", "草坪杂草无人修剪"]),
        ("房屋质量", "engineering", ["客厅外墙雨后渗水", "卧室墙面开裂"]),
    ]),
    ("咨询", "consultation", [
        ("物业费", "finance", ["咨询物业费线上缴纳方式", "咨询物业费发票开具"]),
        ("装修手续", "service", ["装修需要办理哪些手续", "装修押金何时退还"]),
        ("停车管理", "security", ["月租车位续费及价格", "访客车辆如何登记"]),
    ]),
    ("建议", "suggestion", [
        ("社区活动", "service", ["建议周末组织亲子活动"]),
        ("绿化改善", "cleaning", ["小区东门绿化带缺少座椅"]),
    ]),
]
CHANNELS = ["phone"] * 12 + ["visit"] * 4 + ["online"] * 3 + ["email"]
URGENCIES = ["low"] * 4 + ["normal"] * 12 + ["high"] * 3 + ["emergency"]
SLA_HOURS = {"low": (8, 72), "normal": (4, 24), "high": (2, 8), "emergency": (0.5, 4)}
CHANNEL_LABELS = {"phone": "电话", "visit": "来访", "online": "线上/微信", "email": "邮件"}

FEE_ITEMS = [("PROP", "物业服务费", "area"), ("GARB", "生活垃圾清运费", "flat"), ("PARK", "车位管理费", "flat"),
             ("WATER", "公摊水电费", "metered")]
PROP_PRICES = ["1.80", "2.35", "2.80", "3.50"]
PARK_PRICES = ["80.00", "120.00", "150.00", "200.00"]
HABITS = ["monthly"] * 35 + ["quarterly"] * 35 + ["late"] * 18 + ["partial"] * 6 + ["never"] * 6
METHODS = ["online"] * 5 + ["transfer"] * 3 + ["cash"] * 2 + ["card"]


# Helpers -----------------------------------------------------------------------------


class ProgressBar:
    """One line on stderr: label, bar, done/total, elapsed and the estimated time left."""

    def __init__(self, label: str, total: int, stream=sys.stderr):
        self.label, self.total, self.done = label, max(total, 1), 0
        self.started = time.perf_counter()
        self.stream = stream
        self.tty = stream.isatty()
        self._last = 0.0
        self._finished = False

    def update(self, done: int, note: str = "") -> None:
        self.done = done
        now = time.perf_counter()
        if done >= self.total and self._finished:
            return
        if now - self._last < (0.2 if self.tty else 10) and done < self.total:
            return
        self._finished = done >= self.total
        self._last = now
        elapsed = now - self.started
        share = done / self.total
        left = elapsed / share - elapsed if share > 0 else 0
        bar = "#" * int(share * 30)
        line = (f"{self.label:<10} [{bar:<30}] {done}/{self.total} {share:4.0%} "
                f"{_clock(elapsed)} elapsed, {_clock(left)} left {note}")
        if self.tty:
            self.stream.write("\r" + line[:150].ljust(150))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        self.update(self.total)
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 60:02d}:{seconds % 60:02d}"


class Ids:
    """The next id of each table (rows are loaded with explicit ids)."""

    def __init__(self, start: dict[str, int]):
        self.next = dict(start)

    def take(self, table: str, count: int = 1) -> int:
        first = self.next.get(table, 1)
        self.next[table] = first + count
        return first


class Buffers:
    """Rows per table, handed to the sink in large batches."""

    def __init__(self, sink: Sink, flush_rows: int = 50_000):
        self.sink = sink
        self.flush_rows = flush_rows
        self.tables: dict[tuple[Any, tuple[str, ...]], list[tuple]] = {}

    def rows(self, model, columns: tuple[str, ...]) -> list[tuple]:
        return self.tables.setdefault((model, columns), [])

    async def flush(self, everything: bool = False) -> None:
        for (model, columns), rows in self.tables.items():
            if rows and (everything or len(rows) >= self.flush_rows):
                await self.sink.add(model, columns, rows)
                rows.clear()


@lru_cache(maxsize=None)
def _pinyin(name: str) -> tuple[str, str]:
    from core.people import pinyin_keys

    return pinyin_keys(name)


def _phone(index: int) -> str:
    """A unique, random-looking mobile number in E.164 for each index below 10^9."""
    x = (index * 2654435761 + 97531) % 1_000_000_000
    return "+86" + ("13", "15", "18", "19")[x % 4] + f"{x:09d}"


def _id_number(rng: random.Random) -> str:
    birth = date(1950, 1, 1) + timedelta(days=rng.randrange(365 * 50))
    return f"{rng.randint(110000, 659000)}{birth:%Y%m%d}{rng.randint(100, 999)}{rng.choice('0123456789X')}"


def _month_add(day: date, months: int) -> date:
    index = day.year * 12 + day.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def _money(value: Decimal) -> str:
    from plugins.fees.money import round_fen

    return str(round_fen(value))


# The estate group ------------------------------------------------------------------


@dataclass
class UnitInfo:
    id: int
    building: int
    use: str
    area: str
    owner: int | None = None  # customer id
    previous_owner: int | None = None
    transfer: date | None = None
    household: list[int] = field(default_factory=list)  # customers living there (owner first)


@dataclass
class Estate:
    id: int
    code: str
    name: str
    size: int
    units: list[UnitInfo] = field(default_factory=list)
    users: dict[str, list[int]] = field(default_factory=dict)  # role -> user ids
    departments: dict[str, int] = field(default_factory=dict)  # kind -> id
    phones: dict[int, str] = field(default_factory=dict)  # customer id -> first phone
    names: dict[int, str] = field(default_factory=dict)


class Generator:
    def __init__(self, sink: Sink, scale: Scale, seed: int, now: datetime, ids: Ids, roles: dict[str, int],
                 password_hash: str, log: Callable[[str], None]):
        self.sink = sink
        self.scale = scale
        self.rng = random.Random(seed)
        self.now = now
        self.ids = ids
        self.roles = roles
        self.password_hash = password_hash
        self.log = log
        self.buffers = Buffers(sink)
        self.local_today = now.astimezone(ZONE).date()
        self.this_month = self.local_today.replace(day=1)
        self.periods = [_month_add(self.this_month, -k) for k in range(scale.months, 0, -1)]
        self.history_days = max(90, 30 * scale.months)
        self.customer_index = 0
        self.estates: list[Estate] = []
        self.hq_agents: list[int] = []
        self.pbx_id = 0
        self.counts: dict[str, int] = {}

    def _count(self, what: str, n: int = 1) -> None:
        self.counts[what] = self.counts.get(what, 0) + n

    # Sizes and names ---------------------------------------------------------

    def estate_sizes(self) -> list[int]:
        """Units per estate: log-normally spread (a few big estates, many mid-sized), adding up to the total."""
        weights = [self.rng.lognormvariate(0, 0.6) for _ in range(self.scale.estates)]
        total = sum(weights)
        sizes = [max(60, int(self.scale.units * w / total)) for w in weights]
        sizes[sizes.index(max(sizes))] += self.scale.units - sum(sizes)
        return sizes

    def estate_name(self, index: int) -> str:
        word = ESTATE_WORDS[index % len(ESTATE_WORDS)]
        kind = ESTATE_KINDS[(index // len(ESTATE_WORDS)) % len(ESTATE_KINDS)]
        lap = index // (len(ESTATE_WORDS) * len(ESTATE_KINDS))
        return f"{word}{kind}" + (f"{lap + 1}期" if lap else "")

    def person_name(self) -> str:
        from core.demo import GIVEN, SURNAMES

        rng = self.rng
        given = rng.choice(GIVEN) if rng.random() < 0.3 else rng.choice(GIVEN) + rng.choice(GIVEN)
        return rng.choice(SURNAMES) + given

    # Head office ---------------------------------------------------------------

    async def head_office(self) -> None:
        from core.models import Membership, User

        users = self.buffers.rows(User, ("id", "username", "display_name", "email", "extension", "password_hash",
                                         "locale", "created_at"))
        members = self.buffers.rows(Membership, ("id", "user_id", "project_id", "role_id", "department_id"))
        admin = self.ids.take("core_user")
        users.append((admin, "bench_admin", "总部管理员", "admin@example.com", "", self.password_hash, "zh_CN", self.now))
        members.append((self.ids.take("core_membership"), admin, None, self.roles["admin"], None))
        for n in range(HEAD_OFFICE_AGENTS):
            user = self.ids.take("core_user")
            users.append((user, f"bench_hotline{n + 1}", f"总部热线 {n + 1}号", "", f"{8001 + n}", self.password_hash,
                          "zh_CN", self.now))
            members.append((self.ids.take("core_membership"), user, None, self.roles["agent"], None))
            self.hq_agents.append(user)
        from plugins.hotline.call_models import PbxIntegration

        self.pbx_id = self.ids.take("hotline_pbx_integration")
        self.buffers.rows(PbxIntegration, ("id", "name", "project_id", "secret", "adapter", "created_at")).append(
            (self.pbx_id, PBX_NAME, None, PBX_SECRET, "generic", self.now)
        )

    # One estate ----------------------------------------------------------------

    async def estate(self, index: int, size: int) -> Estate:
        from core.models import Project, ProjectModule

        code = f"E{index + 1:03d}"
        city, district = CITIES[index % len(CITIES)]
        estate = Estate(self.ids.take("core_project"), code, self.estate_name(index), size)
        self.buffers.rows(Project, ("id", "code", "name", "address", "timezone", "created_at")).append(
            (estate.id, code, estate.name, f"{city}{district}{estate.name[:2]}路{index + 1}号", ZONE_NAME, self.now)
        )
        modules = self.buffers.rows(ProjectModule, ("id", "project_id", "module", "enabled"))
        for module in ("hotline", "complaints", "handover", "fees", "activities"):
            modules.append((self.ids.take("core_project_module"), estate.id, module, True))
        self.staff(estate)
        self.units(estate)
        self.customers(estate)
        self.work_orders(estate)
        self.fees(estate)
        self._count("estates")
        return estate

    def staff(self, estate: Estate) -> None:
        from core.models import Department, Membership, User

        departments = self.buffers.rows(Department, ("id", "project_id", "name", "kind"))
        for kind, name in DEPARTMENTS:
            estate.departments[kind] = self.ids.take("core_department")
            departments.append((estate.departments[kind], estate.id, name, kind))
        users = self.buffers.rows(User, ("id", "username", "display_name", "email", "extension", "password_hash",
                                         "locale", "created_at"))
        members = self.buffers.rows(Membership, ("id", "user_id", "project_id", "role_id", "department_id"))
        seen: dict[str, int] = {}
        for role, title in STAFF:
            seen[role] = seen.get(role, 0) + 1
            username = f"{estate.code.lower()}_{role}{seen[role]}"
            user = self.ids.take("core_user")
            department = None
            if role == "staff":
                department = estate.departments["engineering" if seen[role] == 1 else "cleaning"]
            extension = f"{6000 + estate.id * 10 + seen[role]}" if role == "agent" else ""
            users.append((user, username, f"{title} {self.person_name()}", f"{username}@example.com", extension,
                          self.password_hash, "zh_CN", self.now))
            members.append((self.ids.take("core_membership"), user, estate.id, self.roles[role], department))
            estate.users.setdefault(role, []).append(user)

    def units(self, estate: Estate) -> None:
        from core.models import Building, Unit

        rng = self.rng
        buildings = self.buffers.rows(Building, ("id", "project_id", "code", "name", "floors"))
        units = self.buffers.rows(Unit, ("id", "project_id", "building_id", "code", "floor", "area", "use", "layout"))
        parking = max(1, estate.size * 8 // 100)
        shops = max(1, estate.size * 3 // 100)
        homes = estate.size - parking - shops
        number = 0
        while homes > 0:
            number += 1
            floors = rng.choice((6, 11, 18, 26, 33))
            building = self.ids.take("core_building")
            buildings.append((building, estate.id, str(number), f"{number}栋", floors))
            for entrance in (1, 2):
                for floor in range(1, floors + 1):
                    for room in (1, 2):
                        if homes <= 0:
                            break
                        layout, area = rng.choice(LAYOUTS)
                        unit = UnitInfo(self.ids.take("core_unit"), building, "residential", area)
                        units.append((unit.id, estate.id, building, f"{number}-{entrance}-{floor}{room:02d}", floor,
                                      area, "residential", layout))
                        estate.units.append(unit)
                        homes -= 1
        for code, name, use, count, area, prefix in (("P", "地下车库", "parking", parking, "12.50", "P-"),
                                                     ("S", "商业街", "commercial", shops, "65.00", "S-")):
            building = self.ids.take("core_building")
            buildings.append((building, estate.id, code, name, 1))
            for n in range(1, count + 1):
                unit = UnitInfo(self.ids.take("core_unit"), building, use, area)
                units.append((unit.id, estate.id, building, f"{prefix}{n:04d}", -1 if use == "parking" else 1, area,
                              use, ""))
                estate.units.append(unit)
        self._count("units", estate.size)

    def customers(self, estate: Estate) -> None:
        from core.models import Customer, CustomerPhone, CustomerUnit, reversed_digits

        rng = self.rng
        customers = self.buffers.rows(Customer, ("id", "project_id", "name", "name_pinyin", "name_initials", "email",
                                                 "preferred_channel", "id_number", "created_at"))
        phones = self.buffers.rows(CustomerPhone, ("id", "project_id", "customer_id", "number", "number_reversed",
                                                   "label"))
        links = self.buffers.rows(CustomerUnit, ("id", "project_id", "customer_id", "unit_id", "relation",
                                                 "start_date", "end_date"))
        oldest = self.local_today - timedelta(days=365 * 6)

        def person(name: str, since: date, *, owner: bool) -> int:
            customer = self.ids.take("core_customer")
            self.customer_index += 1
            full, initials = _pinyin(name)
            email = f"c{customer}@example.com" if rng.random() < 0.3 else ""
            channel = "email" if email and rng.random() < 0.5 else ("wechat" if rng.random() < 0.1 else "phone")
            created = datetime.combine(since, dtime(10), ZONE).astimezone(timezone.utc)
            customers.append((customer, estate.id, name, full, initials, email, channel,
                              _id_number(rng) if owner else "", created))
            number = _phone(self.customer_index)
            phones.append((self.ids.take("core_customer_phone"), estate.id, customer, number, reversed_digits(number),
                           "手机"))
            if rng.random() < 0.2:
                second = _phone(500_000_000 + self.customer_index)
                phones.append((self.ids.take("core_customer_phone"), estate.id, customer, second,
                               reversed_digits(second), "家庭"))
            estate.phones[customer] = number
            estate.names[customer] = name
            return customer

        homes = [u for u in estate.units if u.use != "parking"]
        for unit in homes:
            if rng.random() >= 0.95:
                continue
            since = oldest + timedelta(days=rng.randrange(365 * 5))
            if rng.random() < 0.2:  # sold on: the former owner's link ended the day before
                previous = person(self.person_name(), since, owner=True)
                unit.previous_owner = previous
                unit.transfer = since + timedelta(days=rng.randrange(30, 365 * 2))
                links.append((self.ids.take("core_customer_unit"), estate.id, previous, unit.id, "owner", since,
                              unit.transfer - timedelta(days=1)))
                since = unit.transfer
            owner_name = self.person_name()
            unit.owner = person(owner_name, since, owner=True)
            unit.household.append(unit.owner)
            links.append((self.ids.take("core_customer_unit"), estate.id, unit.owner, unit.id, "owner", since, None))
            if unit.use == "residential":
                for _ in range(rng.choices((0, 1, 2), (30, 45, 25))[0]):
                    member = person(owner_name[0] + self.person_name()[1:], since, owner=False)
                    unit.household.append(member)
                    links.append((self.ids.take("core_customer_unit"), estate.id, member, unit.id, "family", since, None))
            if rng.random() < 0.2:
                start = max(since, self.local_today - timedelta(days=rng.randrange(30, 720)))
                tenant = person(self.person_name(), start, owner=False)
                unit.household.append(tenant)
                links.append((self.ids.take("core_customer_unit"), estate.id, tenant, unit.id, "tenant", start, None))
        owners = [u.owner for u in homes if u.owner]
        for unit in estate.units:
            if unit.use == "parking" and owners and rng.random() < 0.85:  # spaces belong to owners of homes
                unit.owner = rng.choice(owners)
                since = self.local_today - timedelta(days=rng.randrange(30, 365 * 4))
                links.append((self.ids.take("core_customer_unit"), estate.id, unit.owner, unit.id, "owner", since, None))

    # Hotline ---------------------------------------------------------------------

    def work_orders(self, estate: Estate) -> None:
        from core.timeline import TimelineEntry
        from plugins.hotline.call_models import Call
        from plugins.hotline.models import Assignment, CallbackTask, Category, WorkOrder

        rng = self.rng
        categories = self.buffers.rows(Category, ("id", "project_id", "name", "parent_id", "kind"))
        leaves = []  # (category id, kind, department kind, subjects)
        for top, kind, children in CATEGORIES:
            parent = self.ids.take("hotline_category")
            categories.append((parent, estate.id, top, None, kind))
            for name, department, subjects in children:
                child = self.ids.take("hotline_category")
                categories.append((child, estate.id, name, parent, kind))
                leaves.append((child, kind, department, subjects))
        lived_in = [u for u in estate.units if u.household]
        if not lived_in:
            return
        count = int(len(lived_in) * self.scale.orders_per_unit)
        span = self.history_days * 86400
        received = sorted(self.now - timedelta(seconds=rng.randrange(60, span)) for _ in range(count))
        orders = self.buffers.rows(WorkOrder, (
            "id", "project_id", "number", "channel", "kind", "category_id", "urgency", "customer_id", "unit_id",
            "caller_phone", "subject", "description", "status", "level", "created_by_id", "received_at",
            "working_hours_only", "response_due", "resolution_due", "responded_at", "resolved_at", "closed_at",
            "resolution", "first_contact_resolved"))
        assignments = self.buffers.rows(Assignment, ("id", "project_id", "order_id", "department_id", "assignee_id",
                                                     "due_at", "instructions", "report", "done_at", "done_by_id",
                                                     "created_at"))
        tasks = self.buffers.rows(CallbackTask, ("id", "project_id", "order_id", "customer_id", "unit_id", "phone",
                                                 "reason", "source", "due_at", "assignee_id", "status", "attempts",
                                                 "outcome", "comment", "done_at", "done_by_id", "created_at"))
        entries = self.buffers.rows(TimelineEntry, ("id", "project_id", "subject", "subject_id", "kind", "body",
                                                    "data", "author_id", "created_at"))
        calls = self.buffers.rows(Call, ("id", "project_id", "integration_id", "external_id", "caller", "customer_id",
                                         "agent_id", "extension", "status", "started_at", "answered_at", "ended_at",
                                         "duration_seconds", "work_order_id"))
        agents = estate.users["agent"]
        staff = estate.users["staff"]
        year_counts: dict[int, int] = {}
        first_id = self.ids.take("hotline_work_order", count)
        for n, at in enumerate(received):
            order = first_id + n
            unit = rng.choice(lived_in)
            customer = unit.household[0] if rng.random() < 0.8 else rng.choice(unit.household)
            category, kind, department, subjects = rng.choice(leaves)
            urgency = rng.choice(URGENCIES)
            channel = rng.choice(CHANNELS)
            year = at.astimezone(ZONE).year
            year_counts[year] = year_counts.get(year, 0) + 1
            number = f"GD-{year}-{year_counts[year]:06d}"
            response_h, resolution_h = SLA_HOURS[urgency]
            response_due = at + timedelta(hours=response_h)
            resolution_due = at + timedelta(hours=resolution_h)
            age = (self.now - at).total_seconds() / 86400
            fcr = kind == "consultation" and rng.random() < 0.7
            if fcr:
                status = "closed"
            elif age < 2:
                status = rng.choices(("new", "dispatched", "in_progress", "done"), (30, 30, 25, 15))[0]
            elif age < 14:
                status = rng.choices(("new", "dispatched", "in_progress", "done", "callback", "closed"),
                                     (3, 10, 15, 15, 5, 52))[0]
            else:
                status = rng.choices(("done", "callback", "closed"), (1, 2, 97))[0]
            agent = rng.choice(agents)
            responded = resolved = closed = None
            if status not in ("new", "dispatched"):
                responded = at + timedelta(minutes=rng.randrange(5, int(response_h * 60) + 30))
            if status in ("done", "callback", "closed"):
                resolved = responded + timedelta(minutes=rng.randrange(10, int(resolution_h * 60) + 60))
                if resolved > self.now:
                    resolved = self.now - timedelta(minutes=1)
            if status == "closed":
                closed = min(resolved + timedelta(hours=rng.randrange(1, 30)), self.now)
            subject = rng.choice(subjects)
            level = 1 if fcr else (3 if rng.random() < 0.05 else 2)
            orders.append((order, estate.id, number, channel, kind, category, urgency, customer, unit.id,
                           estate.phones[customer] if channel == "phone" else "", subject, "", status, level, agent, at,
                           urgency != "emergency", response_due, resolution_due, responded, resolved, closed,
                           "已在电话中答复业主。" if fcr else ("已处理完毕。" if resolved else ""), fcr))
            entries.append((self.ids.take("core_timeline_entry"), estate.id, "hotline.WorkOrder", order, "status",
                            f"通过{CHANNEL_LABELS[channel]}受理。", {"to": "new"}, agent, at))
            if status != "new" and not fcr:
                dispatched = at + timedelta(minutes=rng.randrange(2, 30))
                assignee = staff[0] if department == "engineering" else staff[-1]
                done_at = resolved if resolved else None
                assignments.append((self.ids.take("hotline_assignment"), estate.id, order,
                                    estate.departments[department], assignee, resolution_due, "",
                                    "已完成维修。" if done_at else "", done_at, assignee if done_at else None,
                                    dispatched))
                entries.append((self.ids.take("core_timeline_entry"), estate.id, "hotline.WorkOrder", order, "assign",
                                f"派单至 {dict(DEPARTMENTS)[department]}。", {"from": "new", "to": "dispatched",
                                                                             "level": level}, agent, dispatched))
            if status in ("done", "callback", "closed"):
                done = status != "done"
                tasks.append((self.ids.take("hotline_callback_task"), estate.id, order, customer, unit.id,
                              estate.phones[customer], f"工单 {number} 回访：{subject}", f"hotline.WorkOrder:{order}",
                              resolved + timedelta(hours=24), agent, "done" if done else "open", 1 if done else 0,
                              "satisfied" if done else "", "业主表示满意。" if done else "",
                              (closed or resolved + timedelta(hours=2)) if done else None, agent if done else None,
                              resolved))
            if closed:
                entries.append((self.ids.take("core_timeline_entry"), estate.id, "hotline.WorkOrder", order, "status",
                                "回访满意，工单关闭。", {"from": "callback", "to": "closed"}, agent, closed))
            if channel == "phone" and age < 30:
                call = self.ids.take("hotline_call")
                length = rng.randrange(40, 600)
                calls.append((call, estate.id, self.pbx_id, f"gen-{call}", estate.phones[customer], customer,
                              rng.choice(self.hq_agents), "", "ended", at - timedelta(seconds=length + 20),
                              at - timedelta(seconds=length), at, length, order))
        self.sequences(estate, {f"hotline.work_order.{year}": n for year, n in year_counts.items()})
        self._count("work orders", count)

    def sequences(self, estate: Estate, values: dict[str, int]) -> None:
        from core.models import Sequence

        rows = self.buffers.rows(Sequence, ("id", "project_id", "key", "last_value"))
        for key, value in values.items():
            rows.append((self.ids.take("core_sequence"), estate.id, key, value))

    # Fees ------------------------------------------------------------------------

    def fees(self, estate: Estate) -> None:
        from plugins.fees.models import Allocation, Bill, BillLine, BillRun, FeeItem, FeeRate, Payment

        rng = self.rng
        if not self.periods:
            return
        items = self.buffers.rows(FeeItem, ("id", "project_id", "code", "name", "basis", "order"))
        item_ids = {}
        for order, (code, name, basis) in enumerate(FEE_ITEMS, 1):
            item_ids[code] = self.ids.take("fees_fee_item")
            items.append((item_ids[code], estate.id, code, name, basis, order))
        valid_from = _month_add(self.periods[0], -12)
        prop = Decimal(rng.choice(PROP_PRICES))
        park = Decimal(rng.choice(PARK_PRICES))
        prices = {("PROP", "residential"): prop, ("PROP", "commercial"): Decimal("5.80"),
                  ("GARB", "residential"): Decimal("8.00"), ("PARK", "parking"): park}
        rates = self.buffers.rows(FeeRate, ("id", "project_id", "item_id", "use", "price", "valid_from", "created_at"))
        for (code, use), price in prices.items():
            rates.append((self.ids.take("fees_fee_rate"), estate.id, item_ids[code], use, price, valid_from, self.now))
        names = {code: name for code, name, _basis in FEE_ITEMS}
        bill_rows = self.buffers.rows(Bill, ("id", "project_id", "number", "unit_id", "customer_id", "period",
                                             "due_date", "total", "paid", "status", "issued_at"))
        line_rows = self.buffers.rows(BillLine, ("id", "project_id", "bill_id", "unit_id", "item_id", "period",
                                                 "description", "quantity", "unit_price", "gross", "discount", "amount"))
        pay_rows = self.buffers.rows(Payment, ("id", "project_id", "receipt_number", "kind", "unit_id", "customer_id",
                                               "amount", "method", "reference", "payer", "cashier_id",
                                               "idempotency_key", "received_at"))
        alloc_rows = self.buffers.rows(Allocation, ("id", "project_id", "payment_id", "bill_id", "unit_id", "amount",
                                                    "created_at"))
        periods = [(p, p.isoformat(), p.strftime("%Y%m"), p.replace(day=15).isoformat(),
                    datetime.combine(p, dtime(2), ZONE).astimezone(timezone.utc)) for p in self.periods]
        cashier = estate.users["cashier"][0]
        bill_serial = receipt_serial = 0
        billed_units = 0
        zero = "0.00"
        count = len(periods)
        for unit in estate.units:
            lines = []  # (item id, description, quantity, price, amount) as text: the same every month
            for code in ("PROP", "GARB", "PARK"):
                price = prices.get((code, unit.use))
                if price is None:
                    continue
                quantity = Decimal(unit.area) if code == "PROP" else Decimal(1)
                lines.append((item_ids[code], names[code], f"{quantity:.2f}", f"{price:.4f}", _money(quantity * price)))
            if not lines:
                continue
            billed_units += 1
            total = sum((Decimal(line[4]) for line in lines), Decimal(0))
            total_text = f"{total:.2f}"
            # Who pays what, decided first so that each bill is written once in its final state.
            habit = rng.choice(HABITS) if unit.owner else "never"
            paid = [zero] * count
            payments: list[tuple[datetime, str, list[int]]] = []  # (received at, amount, month indexes)
            if habit == "partial":
                half = _money(total / 2)
                for k in range(count):
                    at = periods[k][4] + timedelta(days=rng.randrange(5, 40), hours=rng.randrange(1, 10))
                    if at < self.now:
                        paid[k] = half
                        payments.append((at, half, [k]))
            elif habit != "never":
                size = 1 if habit == "monthly" else 3
                for first in range(0, count - size + 1, size):
                    group = list(range(first, first + size))
                    delay = 20 + rng.randrange(55) if habit == "late" else rng.randrange(15)
                    at = periods[group[-1]][4] + timedelta(days=delay, hours=rng.randrange(1, 10))
                    if at >= self.now:
                        break
                    for k in group:
                        paid[k] = total_text
                    payments.append((at, f"{total * size:.2f}", group))
            bill_ids = []
            for k, (period, period_text, yyyymm, due, issued) in enumerate(periods):
                bill = self.ids.take("fees_bill")
                bill_ids.append(bill)
                bill_serial += 1
                customer = unit.owner
                if unit.transfer is not None and period < unit.transfer:
                    customer = unit.previous_owner
                bill_rows.append((bill, estate.id, f"B{yyyymm}-{bill_serial:06d}", unit.id, customer, period_text, due,
                                  total_text, paid[k], "paid" if paid[k] == total_text else "open", issued))
                for item, description, quantity, price, amount in lines:
                    line_rows.append((self.ids.take("fees_bill_line"), estate.id, bill, unit.id, item, period_text,
                                      description, quantity, price, amount, zero, amount))
            for at, amount, months in payments:
                receipt_serial += 1
                payment = self.ids.take("fees_payment")
                pay_rows.append((payment, estate.id, f"R{receipt_serial:08d}", "payment", unit.id, unit.owner, amount,
                                 rng.choice(METHODS), "", "", cashier, f"gen-{payment}", at))
                for k in months:
                    alloc_rows.append((self.ids.take("fees_allocation"), estate.id, payment, bill_ids[k], unit.id,
                                       paid[k], at))
        runs = self.buffers.rows(BillRun, ("id", "project_id", "period", "state", "units_done", "units_total",
                                           "last_unit_id", "bills_created", "created_at", "started_at", "finished_at"))
        last_unit = estate.units[-1].id if estate.units else 0
        for period, _text, _ym, _due, issued in periods:
            runs.append((self.ids.take("fees_bill_run"), estate.id, period, "done", len(estate.units),
                         len(estate.units), last_unit, billed_units, issued, issued, issued + timedelta(minutes=5)))
        self.sequences(estate, {"fees.bill": bill_serial, "fees.receipt": receipt_serial})
        self._count("bills", bill_serial)


# Running it ----------------------------------------------------------------------------


BIG_TABLES = [
    "core_customer", "core_customer_phone", "core_customer_unit", "core_unit", "core_timeline_entry",
    "hotline_work_order", "hotline_assignment", "hotline_callback_task", "hotline_call",
    "fees_bill", "fees_bill_line", "fees_payment", "fees_allocation",
]


def database_url(scale: str, db: str | None) -> str:
    if db:
        return db
    parsed = urlparse(PG_SERVER)
    return parsed._replace(path=f"/courtyard_bench_{scale}").geturl()


def is_postgres(url: str) -> bool:
    return url.startswith(("postgres://", "postgresql://"))


async def create_database(url: str) -> None:
    """A new empty database (an existing one of that name is dropped)."""
    if is_postgres(url):
        import asyncpg

        name = urlparse(url).path.lstrip("/")
        if not name.startswith("courtyard_bench") and not name.startswith("cy_t_"):
            raise SystemExit(f"refusing to drop database {name!r}: bench databases are named courtyard_bench_*")
        admin = await asyncpg.connect(urlparse(url)._replace(path="/postgres").geturl())
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()
    else:
        path = Path(url[len("sqlite://"):])
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        path.parent.mkdir(parents=True, exist_ok=True)


def _settings(url: str):
    from core import settings as settings_module

    settings = settings_module.load(environ={})
    settings.data["database"]["url"] = url
    return settings


async def load(url: str, scale: Scale, *, seed: int = 20261123, fresh: bool = True,
               log: Callable[[str], None] = print, progress: bool = True) -> dict[str, Any]:
    """Generate the estate group into the database at `url` (created anew unless `fresh` is false and it exists).

    Returns what was made: counts per table and seconds per phase.
    """
    from core import db, settings as settings_module
    from core.auth import hash_password
    from core.cli import migrate_database
    from core.models import Role
    from core.plugins import PluginHost, use_host
    from core.scope import unscoped

    timings: dict[str, float] = {}
    started = time.perf_counter()
    if fresh:
        await create_database(url)
    settings = settings_module.use(_settings(url))
    host = use_host(PluginHost.discover(entry_points=False))
    host.apply_settings(settings)
    await migrate_database(host, settings, quiet=True)
    timings["migrate"] = time.perf_counter() - started

    now = datetime.now(timezone.utc).replace(second=0, microsecond=0)
    await db.init(host, url)
    try:
        with unscoped():
            roles = {role.code: role.id for role in await Role.all()}
        if is_postgres(url):
            sink: Sink = await PostgresSink.connect(asyncpg_dsn(url), now)
        else:
            sink = SqliteSink(url[len("sqlite://"):], now)
            sink.db.execute("PRAGMA foreign_keys = OFF")  # checked in one pass at the end
        generator = Generator(sink, scale, seed, now, Ids({}), roles, hash_password(PASSWORD), log)
        phase = time.perf_counter()
        if isinstance(sink, PostgresSink):
            await sink.drop_constraints(BIG_TABLES)
        await generator.head_office()
        sizes = generator.estate_sizes()
        bar = ProgressBar("estates", len(sizes)) if progress else None
        for index, size in enumerate(sizes):
            generator.estates.append(await generator.estate(index, size))
            await generator.buffers.flush()
            if bar:
                rows = sum(sink.counts.values())
                bar.update(index + 1, f"{rows / 1e6:.1f}M rows")
        await generator.buffers.flush(everything=True)
        if bar:
            bar.close()
        timings["load"] = time.perf_counter() - phase
        phase = time.perf_counter()
        if isinstance(sink, PostgresSink):
            log("Checking constraints and building indexes ...")
            await sink.restore_constraints(asyncpg_dsn(url), report=log)
            await sink.reset_sequences(sorted(sink.counts))
        else:
            problems = sink.db.execute("PRAGMA foreign_key_check").fetchall()
            if problems:
                raise RuntimeError(f"foreign keys broken: {problems[:5]}")
            sink.db.execute("PRAGMA foreign_keys = ON")
        timings["constraints"] = time.perf_counter() - phase
        phase = time.perf_counter()
        await _plugin_records(host, generator, log)
        timings["plugins"] = time.perf_counter() - phase
        phase = time.perf_counter()
        await sink.analyze()
        timings["analyze"] = time.perf_counter() - phase
        counts = dict(sink.counts)
        await sink.close()
    finally:
        await db.close()
    timings["total"] = time.perf_counter() - started
    return {"counts": counts, "rows": sum(counts.values()), "seconds": {k: round(v, 1) for k, v in timings.items()},
            # The generator's own CPU: on a busy machine the wall time is mostly waiting for a core.
            "generator_cpu_seconds": round(time.process_time(), 1),
            "made": generator.counts, "generated_at": now.isoformat(), "seed": seed}


async def _plugin_records(host, generator: Generator, log) -> None:
    """Dunning ladders everywhere; the complaints/handover/activities demo records in the first estates."""
    from core.models import Project
    from core.scope import unscoped
    from plugins.fees.dunning import ensure_default_steps

    rng = random.Random(7)
    with unscoped():
        for estate in generator.estates:
            await ensure_default_steps(estate.id)
        # The smallest estates: the plugins' demo loaders work record by record through the ORM.
        smallest = sorted(generator.estates, key=lambda e: (e.size, e.id))[: generator.scale.demo_estates]
        for estate in smallest:
            project = await Project.get(id=estate.id)
            await host.call("demo_data", enabled={"complaints", "handover", "activities"}, contain=False,
                            project=project, rng=rng)
            log(f"Demo records of complaints, handover and activities added to {estate.code}.")


def scale_from_args(args) -> Scale:
    scale = SCALES[args.scale]
    overrides = {k: getattr(args, k) for k in ("estates", "units", "months", "orders_per_unit") if getattr(args, k) is not None}
    return replace(scale, **overrides)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", choices=sorted(SCALES), default="small", help="preset size (default: small)")
    parser.add_argument("--db", help="database URL (default: postgres courtyard_bench_<scale> on COURTYARD_BENCH_PG's server)")
    parser.add_argument("--estates", type=int, help="override the preset's number of estates")
    parser.add_argument("--units", type=int, help="override the preset's number of units")
    parser.add_argument("--months", type=int, help="override the preset's months of bills")
    parser.add_argument("--orders-per-unit", type=float, dest="orders_per_unit", help="override work orders per unit")
    parser.add_argument("--seed", type=int, default=20261123)
    args = parser.parse_args(argv)
    import logging

    logging.basicConfig(level=logging.WARNING)
    scale = scale_from_args(args)
    url = database_url(args.scale, args.db)
    print(f"Generating {args.scale} ({scale}) into {url}")
    result = asyncio.run(load(url, scale, seed=args.seed))
    result.update(scale=args.scale, parameters=asdict(scale), database=url.rsplit("/", 1)[-1])
    out = ROOT / "bench" / "results" / f"generate-{args.scale}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    print(f"{result['rows']:,} rows in {result['seconds']['total']:.0f}s ({result['seconds']}); written {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
