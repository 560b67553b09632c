"""Keys to the owner at handover, the 360 section, search, dashboard, exports, and other estates' records."""

from core.api import unscoped
from plugins.handover import services
from plugins.handover.models import HolderKind, InspectionItem, KeySet, KeyState, UnitHandover
from tests.handover_helpers import clock, estate, login, make_batch  # noqa: F401  (fixtures)


async def _handed_over(estate):
    """The first unit inspected (every item fine, one minor defect accepted as open) and signed for."""
    with unscoped():
        handover = await UnitHandover.all().order_by("id").first()
        inspection = await services.start_inspection(handover, by=estate["tech"])
        for item in await InspectionItem.filter(inspection_id=inspection.id):
            await services.mark_item_ok(item, by=estate["tech"])
        await services.record_defect(
            handover, estate["east"], by=estate["tech"], location="阳台", description="栏杆划痕", category="fixtures",
            severity="minor", responsible="contractor", contractor_id=estate["builder"].id,
            deadline=services.local_today(estate["east"]),
        )
        await services.accept(handover, by=estate["boss"], signed_by="业主1", with_open_defects=True)
        return await UnitHandover.get(id=handover.id)


async def test_keys_go_to_the_owner_at_handover_and_show_on_the_360_page(make_client, estate):
    boss = await login(make_client, "boss")
    await make_batch(boss, estate)
    tech = await login(make_client, "tech")
    with unscoped():
        entrance = await services.register_keyset(estate["units"][0], tag="K-101-A", kind="entrance", count=3,
                                                  slot="A-01", keeper=estate["tech"])
        mailbox = await services.register_keyset(estate["units"][0], tag="K-101-M", kind="mailbox", count=1,
                                                 slot="A-01", keeper=estate["tech"])
        handover = await UnitHandover.all().order_by("id").first()
    # Before the owner has signed, the keys stay with the company.
    response = await tech.form(f"/p/EAST/handover/handovers/{handover.id}/keys-to-owner", {})
    assert response.status_code == 422
    handover = await _handed_over(estate)
    # A set that is out must come back first.
    with unscoped():
        await services.check_out(mailbox, holder_kind=HolderKind.STAFF, holder=estate["agent"], purpose="核对",
                                 due_at=services.clock().replace(hour=23), by=estate["tech"])
    response = await tech.form(f"/p/EAST/handover/handovers/{handover.id}/keys-to-owner", {})
    assert response.status_code == 422 and "K-101-M" in response.text
    with unscoped():
        await services.check_in_keys(mailbox, returned_by="王客服", receiver=estate["tech"], sealed=True)
    response = await tech.form(f"/p/EAST/handover/handovers/{handover.id}/keys-to-owner", {})
    assert response.status_code == 303
    receipt = await tech.get(response.headers["location"])
    assert receipt.status_code == 200 and "K-101-A" in receipt.text and "K-101-M" in receipt.text
    with unscoped():
        for keyset in (entrance, mailbox):
            keyset = await KeySet.get(id=keyset.id)
            assert keyset.state == KeyState.OWNER and keyset.custodian_customer_id == estate["owners"][0].id
            assert keyset.custodian_name == "业主1"

    page = await boss.get(f"/p/EAST/customers/{estate['owners'][0].id}")
    assert page.status_code == 200
    assert "K-101-A" in page.text and "YF000001" in page.text


async def test_search_dashboard_and_exports(make_client, estate):
    boss = await login(make_client, "boss")
    await make_batch(boss, estate)
    with unscoped():
        await services.register_keyset(estate["units"][1], tag="TAG-7788", kind="entrance", count=2, slot="B-02",
                                       keeper=estate["tech"])
    await _handed_over(estate)

    found = await boss.get("/search?q=TAG-7788")
    assert "/p/EAST/handover/keys/" in found.text
    found = await boss.get("/search?q=YF000001")
    assert "/p/EAST/handover/defects/" in found.text

    dashboard = await boss.get("/p/EAST/")
    assert dashboard.status_code == 200 and "1 / 3" in dashboard.text

    export = await boss.get("/p/EAST/handover/defects?export=csv")
    assert export.status_code == 200 and "YF000001" in export.text and "栏杆划痕" in export.text
    export = await boss.get("/p/EAST/handover/keys?export=xlsx")
    assert export.status_code == 200 and export.content[:2] == b"PK"
    sheet = await boss.get(f"/p/EAST/handover/contractors/{estate['builder'].id}")
    assert sheet.status_code == 200 and "YF000001" in sheet.text


async def test_every_handover_page_renders(make_client, estate):
    boss = await login(make_client, "boss")
    batch_url = await make_batch(boss, estate)
    handover = await _handed_over(estate)
    for path in ("", "handovers", "defects", "keys", "keys/new", "checkouts", "contractors", "contractors/new",
                 "checklists", "checklists/new", "audits", "batches/new"):
        response = await boss.get(f"/p/EAST/handover/{path}")
        assert response.status_code == 200, (path, response.text[:500])
    for url in (batch_url, f"/p/EAST/handover/handovers/{handover.id}", f"/p/EAST/handover/handovers/{handover.id}/form"):
        assert (await boss.get(url)).status_code == 200, url


async def test_another_estates_records_answer_404(make_client, estate):
    west = await login(make_client, "west_boss")
    boss = await login(make_client, "boss")
    await make_batch(boss, estate)
    handover = await _handed_over(estate)
    with unscoped():
        keyset = await services.register_keyset(estate["units"][1], tag="K-9", kind="entrance", count=1, slot="C-1",
                                                keeper=estate["tech"])
    for url in (f"/p/WEST/handover/handovers/{handover.id}", f"/p/WEST/handover/keys/{keyset.id}",
                f"/p/EAST/handover/keys/{keyset.id}"):
        assert (await west.get(url)).status_code == 404, url
    response = await west.form(f"/p/WEST/handover/keys/{keyset.id}/checkout", {
        "holder_kind": "staff", "purpose": "x", "due_at": "2026-05-05T10:00"})
    assert response.status_code == 404
    with unscoped():
        assert (await KeySet.get(id=keyset.id)).state == KeyState.IN
