"""Demo data: a handover batch under way, with checklists, contractors, defects in every state and a key cabinet."""

from __future__ import annotations

from datetime import timedelta

from core.api import Building, Membership, Unit, timeline
from plugins.handover import services
from plugins.handover.models import (
    Appointment,
    AppointmentState,
    BookedVia,
    ChecklistLine,
    ChecklistTemplate,
    Contractor,
    ContractorContact,
    Defect,
    DefectCategory,
    HandoverState,
    HolderKind,
    InspectionItem,
    KeyCheckout,
    KeyKind,
    Responsible,
    Severity,
    TimeSlot,
    UnitHandover,
)

ROOMS = {
    "客厅": [("墙面", False), ("地面", False), ("入户门", True), ("窗户", True)],
    "主卧": [("墙面", False), ("窗户", True), ("插座", False)],
    "厨房": [("给排水", True), ("燃气管道", True), ("墙地砖", False)],
    "卫生间": [("防水", True), ("地漏", False), ("洁具", False)],
    "阳台": [("栏杆", True), ("排水", False)],
}
CONTRACTORS = [
    ("中建三局第一分公司", "土建", "李工", "13911112222"),
    ("华东水电安装有限公司", "水电", "周工", "13922223333"),
    ("美居门窗有限公司", "门窗", "吴经理", "13933334444"),
]
DEFECTS = [
    ("客厅南墙", "墙面多处裂缝", DefectCategory.WALLS, Severity.MAJOR, 0),
    ("卫生间", "地漏反水", DefectCategory.PLUMBING, Severity.MAJOR, 1),
    ("主卧窗户", "窗扇关闭不严", DefectCategory.DOORS_WINDOWS, Severity.MINOR, 2),
    ("厨房", "墙砖空鼓", DefectCategory.WALLS, Severity.MINOR, 0),
    ("入户门", "门锁卡滞", DefectCategory.DOORS_WINDOWS, Severity.CRITICAL, 2),
]


async def load(project, rng) -> None:
    staff = await Membership.filter(project_id=project.id).prefetch_related("user", "role")
    by_role = {m.role.code: m.user for m in staff}
    manager, tech = by_role.get("manager"), by_role.get("staff") or by_role.get("manager")
    if manager is None:
        return
    today = services.local_today(project)

    template = await ChecklistTemplate.create(project_id=project.id, layout="", name="标准验房单")
    position = 0
    for room, items in ROOMS.items():
        for item, mandatory in items:
            await ChecklistLine.create(project_id=project.id, template=template, room=room, item=item,
                                       mandatory=mandatory, position=position)
            position += 1
    contractors = []
    for name, trade, contact, phone in CONTRACTORS:
        contractor = await Contractor.create(project_id=project.id, name=name, trade=trade, phone=phone,
                                             email=f"warranty{len(contractors) + 1}@example.com",
                                             warranty_until=today + timedelta(days=730))
        await ContractorContact.create(project_id=project.id, contractor=contractor, name=contact, role="现场负责人", phone=phone)
        contractors.append(contractor)

    building = await Building.filter(project_id=project.id).order_by("code").first()
    batch = await services.create_batch(project, name="一期交房", start=today - timedelta(days=3), end=today + timedelta(days=4),
                                        building_ids=[building.id], by=manager)
    # Past and coming days: slots of one hour, three owners each.
    day = batch.start_date
    while day <= batch.end_date:
        for hour in (9, 10, 11, 14, 15, 16):
            await TimeSlot.create(project_id=project.id, batch=batch, day=day, start_minute=hour * 60,
                                  end_minute=hour * 60 + 60, capacity=3)
        day += timedelta(days=1)
    slots = await TimeSlot.filter(batch_id=batch.id).order_by("day", "start_minute")
    handovers = await UnitHandover.filter(batch_id=batch.id, owner_id__isnull=False).order_by("id")
    seat = 0
    for handover in handovers:
        if rng.random() < 0.25:
            continue
        if seat // 3 >= len(slots):
            break
        slot = slots[seat // 3]
        seat += 1
        past = slot.day < today
        appointment = await Appointment.create(
            project_id=project.id, handover=handover, slot=slot, active_for=handover.id, booked_by=manager,
            via=rng.choice([BookedVia.STAFF, BookedVia.LINK]), created_at=services.clock() - timedelta(days=7),
            state=AppointmentState.CHECKED_IN if past else AppointmentState.BOOKED,
            checked_in_at=services.local_datetime(project, slot.day, slot.start_minute + 5) if past else None,
        )
        await TimeSlot.filter(id=slot.id).update(booked=slot.booked + 1)
        slot.booked += 1
        await UnitHandover.filter(id=handover.id).update(
            state=HandoverState.CHECKED_IN if past else HandoverState.BOOKED
        )
        await timeline.post(handover, "appointment", f"{slot}", author=manager, data={"slot_id": slot.id})
        if past:
            await _inspect(project, handover, appointment, tech, manager, contractors, rng, today)

    await _keys(project, building, manager, tech, contractors, rng)


async def _inspect(project, handover, appointment, tech, manager, contractors, rng, today) -> None:
    handover = await UnitHandover.get(id=handover.id)
    inspection = await services.start_inspection(handover, by=tech)
    items = await InspectionItem.filter(inspection_id=inspection.id)
    found = rng.sample(DEFECTS, rng.randint(0, 3))
    defect_items = {}
    for location, description, category, severity, contractor in found:
        item = next((i for i in items if i.room in location or i.item in description), None)
        defect = await services.record_defect(
            handover, project, by=tech, location=location, description=description, category=category,
            severity=severity, responsible=Responsible.CONTRACTOR if rng.random() < 0.8 else Responsible.IN_HOUSE,
            contractor_id=contractors[contractor].id, deadline=today + timedelta(days=rng.choice((1, 3, 7))),
            item_id=item.id if item and item.id not in defect_items else None,
        )
        if rng.random() < 0.3:  # some repairs are already late, for the tracking sheet and the escalation job
            await Defect.filter(id=defect.id).update(deadline=today - timedelta(days=2))
        if item:
            defect_items[item.id] = defect
    for item in items:
        if item.id not in defect_items:
            await services.mark_item_ok(item, by=tech)
    defects = list(defect_items.values())
    for defect in defects:
        step = rng.random()
        if step < 0.4:
            continue
        await services.record_repair(defect, by=tech, note="已按规范返修")
        if step > 0.6:
            await services.reinspect(defect, project, by=tech, passed=True)
    blockers, open_defects = await services.acceptance_blockers(handover)
    if not blockers and rng.random() < 0.7:
        await services.accept(handover, by=manager, signed_by=(await handover.owner).name,
                              with_open_defects=bool(open_defects))


async def _keys(project, building, manager, tech, contractors, rng) -> None:
    units = await Unit.filter(building_id=building.id).order_by("code")
    keysets = []
    for index, unit in enumerate(units):
        slot = f"{chr(ord('A') + index // 20)}-{index % 20 + 1:02d}"
        keysets.append(await services.register_keyset(unit, tag=f"{project.code[:2]}{unit.code.replace('-', '')}E",
                                                      kind=KeyKind.ENTRANCE, count=3, slot=slot, keeper=tech, by=manager))
    handed = await UnitHandover.filter(project_id=project.id, state=HandoverState.ACCEPTED)
    for handover in handed:
        await services.hand_keys_to_owner(handover, by=manager)
    in_cabinet = [k for k in keysets if k.unit_id not in {h.unit_id for h in handed}]
    for keyset, hours in zip(rng.sample(in_cabinet, min(3, len(in_cabinet))), (4, 30, -5)):
        checkout = await services.check_out(
            keyset, holder_kind=HolderKind.CONTRACTOR, holder=rng.choice(contractors), purpose="维修进场",
            due_at=services.clock() + timedelta(hours=abs(hours)), by=manager,
        )
        if hours < 0:  # one overdue set for the alerts
            await KeyCheckout.filter(id=checkout.id).update(due_at=services.clock() - timedelta(hours=5),
                                                            out_at=services.clock() - timedelta(days=1))
