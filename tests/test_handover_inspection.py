"""Inspection and defects: checklist on site, defects through repair, re-inspection and the owner's acceptance."""

import asyncio

from core.api import attachments, timeline, unscoped
from plugins.handover import services
from plugins.handover.models import (
    Defect, DefectState, HandoverState, Inspection, InspectionItem, ItemResult, UnitHandover,
)
from tests.handover_helpers import clock, estate, login, make_batch  # noqa: F401  (fixtures)

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


async def _first_handover():
    with unscoped():
        return await UnitHandover.all().order_by("id").first()


async def _items(inspection_id):
    with unscoped():
        return {f"{i.room}/{i.item}": i for i in await InspectionItem.filter(inspection_id=inspection_id)}


async def _start(c, handover):
    response = await c.form(f"/p/EAST/handover/handovers/{handover.id}/inspection", {})
    assert response.status_code == 303, response.text[:500]
    with unscoped():
        return await Inspection.get(handover_id=handover.id)


async def _defect(c, inspection, item, **over):
    data = {"csrftoken": await c.ensure_csrf(), "item": str(item.id) if item else "", "location": "客厅南墙",
            "description": "墙面多处裂缝", "category": "walls", "severity": "major", "responsible": "contractor",
            "contractor": "", "deadline": "2026-05-11"}
    data.update(over)
    return await c.post(f"/p/EAST/handover/inspections/{inspection.id}/defects", data=data,
                        files=[("photo", ("crack.png", PNG, "image/png"))])


async def test_a_defect_goes_through_repair_reinspection_and_acceptance(make_client, estate):
    boss = await login(make_client, "boss")
    await make_batch(boss, estate)
    handover = await _first_handover()
    tech = await login(make_client, "tech")
    inspection = await _start(tech, handover)
    items = await _items(inspection.id)
    assert set(items) == {"客厅/墙面", "客厅/入户门", "厨房/给排水", "卫生间/防水"}

    page = await tech.get(f"/p/EAST/handover/inspections/{inspection.id}")
    assert page.status_code == 200 and "入户门" in page.text

    # A defect on the mandatory front door, with a photo, repaired by the contractor under warranty.
    response = await _defect(tech, inspection, items["客厅/入户门"], contractor=str(estate["builder"].id),
                             location="入户门", description="门框变形")
    assert response.status_code == 303, response.text[:800]
    with unscoped():
        door = await Defect.get(location="入户门")
        assert door.number == "YF000001" and door.mandatory and door.state == DefectState.OPEN
        assert len(await attachments.list_for(door)) == 1
        assert (await InspectionItem.get(id=items["客厅/入户门"].id)).result == ItemResult.DEFECT

    # A contractor defect needs its contractor: refused next to the field, nothing stored.
    response = await _defect(tech, inspection, items["客厅/墙面"])
    assert response.status_code == 422 and "f-contractor-error" in response.text
    with unscoped():
        assert await Defect.all().count() == 1

    # A minor defect for the in-house technicians on a non-mandatory item.
    response = await _defect(tech, inspection, items["卫生间/防水"], responsible="in_house", severity="minor",
                             location="卫生间地漏", description="地漏盖松动")
    assert response.status_code == 303
    for key in ("客厅/墙面", "厨房/给排水"):
        assert (await tech.form(f"/p/EAST/handover/inspections/{inspection.id}/items/{items[key].id}/ok", {})).status_code == 303
    # Marking the defective door "fine" is refused while its defect is open.
    response = await tech.form(f"/p/EAST/handover/inspections/{inspection.id}/items/{items['客厅/入户门'].id}/ok", {})
    assert response.status_code == 422

    # The owner cannot accept with the mandatory door defect unresolved: refused, nothing changed.
    response = await boss.form(f"/p/EAST/handover/handovers/{handover.id}/accept",
                               {"signed_by": "业主1", "with_open_defects": "1"})
    assert response.status_code == 422 and "YF000001" in response.text
    with unscoped():
        assert (await UnitHandover.get(id=handover.id)).state == HandoverState.INSPECTING

    # Repair -> failed re-inspection (new deadline) -> repair -> passed.
    door_url = f"/p/EAST/handover/defects/{door.id}"
    assert (await tech.form(door_url + "/repair", {"repair_note": "更换门框"})).status_code == 303
    response = await tech.form(door_url + "/reinspect", {"result": "fail", "reinspect_note": "仍有缝隙"})
    assert response.status_code == 422 and "f-deadline-error" in response.text
    assert (await tech.form(door_url + "/reinspect", {"result": "fail", "reinspect_note": "仍有缝隙",
                                                      "deadline": "2026-05-08"})).status_code == 303
    with unscoped():
        door = await Defect.get(id=door.id)
        assert door.state == DefectState.OPEN and door.reopened == 1
    assert (await tech.form(door_url + "/repair", {"repair_note": "重新安装"})).status_code == 303
    assert (await tech.form(door_url + "/reinspect", {"result": "pass"})).status_code == 303

    # The minor defect is still open: the owner accepts only when it is listed and accepted explicitly.
    response = await boss.form(f"/p/EAST/handover/handovers/{handover.id}/accept", {"signed_by": "业主1"})
    assert response.status_code == 422 and "f-with_open_defects-error" in response.text
    form = {"csrftoken": await boss.ensure_csrf(), "signed_by": "业主1", "with_open_defects": "1"}
    response = await boss.post(f"/p/EAST/handover/handovers/{handover.id}/accept", data=form,
                               files=[("signed_form", ("signed.png", PNG, "image/png"))])
    assert response.status_code == 303, response.text[:800]
    with unscoped():
        accepted = await UnitHandover.get(id=handover.id)
        assert accepted.state == HandoverState.ACCEPTED and accepted.signed_by == "业主1"
        assert accepted.accepted_by_id == estate["boss"].id and accepted.accepted_at is not None
        assert [d["number"] for d in accepted.open_defects_accepted] == ["YF000002"]
        assert (await Defect.get(id=door.id)).state == DefectState.ACCEPTED
        assert [a.filename for a in await attachments.list_for(accepted)] == ["signed.png"]
        assert any("业主1" in e.body for e in await timeline.history(accepted))
    detail = await boss.get(f"/p/EAST/handover/handovers/{handover.id}")
    assert "YF000002" in detail.text
    printable = await boss.get(f"/p/EAST/handover/handovers/{handover.id}/form")
    assert printable.status_code == 200 and "门框变形" in printable.text

    # After the handover, no more defects can be added to the inspection.
    response = await _defect(tech, inspection, None, responsible="in_house")
    assert response.status_code == 422


async def test_a_unit_without_inspection_cannot_be_accepted(make_client, estate):
    boss = await login(make_client, "boss")
    await make_batch(boss, estate)
    handover = await _first_handover()
    response = await boss.form(f"/p/EAST/handover/handovers/{handover.id}/accept", {"signed_by": "业主1"})
    assert response.status_code == 422
    with unscoped():
        assert (await UnitHandover.get(id=handover.id)).state == HandoverState.PLANNED


async def test_acceptance_and_a_new_critical_defect_at_once_never_both_win(make_client, estate):
    """Two staff at the same moment: one records a critical defect, the other the owner's signature."""
    boss = await login(make_client, "boss")
    await make_batch(boss, estate)
    handover = await _first_handover()
    tech = await login(make_client, "tech")
    inspection = await _start(tech, handover)
    items = await _items(inspection.id)
    for item in items.values():
        await tech.form(f"/p/EAST/handover/inspections/{inspection.id}/items/{item.id}/ok", {})

    async def record():
        with unscoped():
            await services.record_defect(
                handover, estate["east"], by=estate["tech"], location="主卧", description="窗户漏水", category="plumbing",
                severity="critical", responsible="in_house", contractor_id=None, deadline=services.local_today(estate["east"]),
            )

    async def sign():
        with unscoped():
            await services.accept(handover, by=estate["boss"], signed_by="业主1", with_open_defects=False)

    results = await asyncio.gather(record(), sign(), return_exceptions=True)
    assert sorted(r is None for r in results) == [False, True], results
    assert all(r is None or isinstance(r, services.HandoverError) for r in results)
    with unscoped():
        accepted = (await UnitHandover.get(id=handover.id)).state == HandoverState.ACCEPTED
        recorded = await Defect.filter(handover_id=handover.id).exists()
    assert accepted != recorded
