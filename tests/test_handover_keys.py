"""Key custody: register, check out and return with a named custodian at every moment, loss, re-keying, audit."""

import asyncio
from datetime import timedelta, timezone

from core.api import timeline, unscoped
from plugins.handover import services
from plugins.handover.models import (
    AuditFinding, AuditLine, CabinetAudit, HolderKind, KeyCheckout, KeySet, KeyState,
)
from tests.handover_helpers import clock, estate, local, login  # noqa: F401  (fixtures)


def custody_is_named(keyset: KeySet) -> bool:
    """Exactly one custodian: the column of its kind is set, the others are empty, the name is shown."""
    columns = {HolderKind.STAFF: keyset.custodian_user_id, HolderKind.OWNER: keyset.custodian_customer_id,
               HolderKind.CONTRACTOR: keyset.custodian_contractor_id}
    return bool(keyset.custodian_name) and columns[keyset.custodian_kind] is not None and sum(
        1 for value in columns.values() if value is not None) == 1


async def _key(keyset_id) -> KeySet:
    with unscoped():
        return await KeySet.get(id=keyset_id)


async def _register(c, estate, tag="K-101-A", unit="1-1-101"):
    response = await c.form("/p/EAST/handover/keys/new", {
        "unit": unit, "tag": tag, "kind": "entrance", "count": "3", "slot": "A-01", "keeper": str(estate["tech"].id),
        "sealed": "1",
    })
    assert response.status_code == 303, response.text[:500]
    with unscoped():
        return await KeySet.get(tag=tag)


async def test_checkout_and_return_keep_a_named_custodian(make_client, estate):
    tech = await login(make_client, "tech")
    keyset = await _register(tech, estate)
    assert keyset.state == KeyState.IN and keyset.custodian_name == "刘师傅" and custody_is_named(keyset)

    builder = estate["builder"]
    response = await tech.form(f"/p/EAST/handover/keys/{keyset.id}/checkout", {
        "holder_kind": "contractor", "contractor": str(builder.id), "purpose": "维修 YF000001",
        "due_at": "2026-05-04T17:00",
    })
    assert response.status_code == 303, response.text[:500]
    receipt = await tech.get(response.headers["location"])
    assert receipt.status_code == 200 and "K-101-A" in receipt.text and "中建三局" in receipt.text
    out = await _key(keyset.id)
    assert out.state == KeyState.OUT and out.custodian_name == "中建三局" and custody_is_named(out)
    with unscoped():
        checkout = await KeyCheckout.get(keyset_id=keyset.id)
    assert checkout.due_at == local(2026, 5, 4, 17, 0).astimezone(timezone.utc) and checkout.issued_by_id == estate["tech"].id

    # Checking out a set that is out is refused, with who has it; nothing changes.
    response = await tech.form(f"/p/EAST/handover/keys/{keyset.id}/checkout", {
        "holder_kind": "staff", "staff": str(estate["agent"].id), "purpose": "看房", "due_at": "2026-05-04T12:00",
    })
    assert response.status_code == 422 and "中建三局" in response.text
    assert (await _key(keyset.id)).custodian_name == "中建三局"

    # The contractor's worker brings it back to the agent, who becomes the custodian.
    response = await tech.form(f"/p/EAST/handover/keys/{keyset.id}/return", {
        "returned_by": "张工", "receiver": str(estate["agent"].id), "sealed": "1",
    })
    assert response.status_code == 303
    back = await _key(keyset.id)
    assert back.state == KeyState.IN and back.custodian_name == "王客服" and custody_is_named(back)
    with unscoped():
        checkout = await KeyCheckout.get(id=checkout.id)
        assert checkout.open_for is None and checkout.returned_by_name == "张工"
        assert checkout.received_by_id == estate["agent"].id and checkout.returned_at is not None
        kinds = [e.kind for e in await timeline.history(back)]
    assert kinds[:3] == ["return", "checkout", "status"]

    # Returning a set that is not out is refused.
    response = await tech.form(f"/p/EAST/handover/keys/{keyset.id}/return", {
        "returned_by": "张工", "receiver": str(estate["agent"].id),
    })
    assert response.status_code == 422
    with unscoped():
        assert await KeyCheckout.filter(keyset_id=keyset.id).count() == 1


async def test_bad_checkout_input_is_refused_next_to_the_field(make_client, estate):
    tech = await login(make_client, "tech")
    keyset = await _register(tech, estate)
    response = await tech.form(f"/p/EAST/handover/keys/{keyset.id}/checkout", {
        "holder_kind": "owner", "customer": "", "purpose": "装修", "due_at": "2026-05-04T17:00",
    })
    assert response.status_code == 422
    with unscoped():
        assert not await KeyCheckout.filter(keyset_id=keyset.id).exists()
    response = await tech.form(f"/p/EAST/handover/keys/{keyset.id}/checkout", {
        "holder_kind": "owner", "customer": str(estate["owners"][0].id), "purpose": "装修", "due_at": "2026-05-03T17:00",
    })
    assert response.status_code == 422 and "f-due_at-error" in response.text
    response = await tech.form("/p/EAST/handover/keys/new", {
        "unit": "1-1-102", "tag": "K-101-A", "kind": "entrance", "count": "1", "slot": "A-02", "keeper": str(estate["tech"].id),
    })
    assert response.status_code == 422 and "f-tag-error" in response.text
    assert (await _key(keyset.id)).state == KeyState.IN
    # Returning a set that is in the cabinet (a page left open): no return form to show it next to, so the alert.
    response = await tech.form(f"/p/EAST/handover/keys/{keyset.id}/return", {"returned_by": "", "receiver": ""})
    assert response.status_code == 422 and 'id="key-error"' in response.text


async def test_two_staff_checking_out_one_key_at_once_exactly_one_succeeds(make_client, estate):
    tech = await login(make_client, "tech")
    keyset = await _register(tech, estate)
    due = services.clock() + timedelta(hours=3)

    async def take(holder_kind, holder):
        with unscoped():
            return await services.check_out(keyset, holder_kind=holder_kind, holder=holder, purpose="看房",
                                            due_at=due, by=estate["tech"])

    results = await asyncio.gather(
        take(HolderKind.STAFF, estate["agent"]), take(HolderKind.CONTRACTOR, estate["builder"]),
        take(HolderKind.OWNER, estate["owners"][0]), return_exceptions=True,
    )
    wins = [r for r in results if isinstance(r, KeyCheckout)]
    refusals = [r for r in results if isinstance(r, services.HandoverError)]
    assert len(wins) == 1 and len(refusals) == 2, results
    out = await _key(keyset.id)
    assert out.state == KeyState.OUT and out.custodian_name == wins[0].holder_name and custody_is_named(out)
    with unscoped():
        assert await KeyCheckout.filter(keyset_id=keyset.id).count() == 1


async def test_two_returns_at_once_record_one(make_client, estate):
    tech = await login(make_client, "tech")
    keyset = await _register(tech, estate)
    with unscoped():
        await services.check_out(keyset, holder_kind=HolderKind.OWNER, holder=estate["owners"][0], purpose="装修",
                                 due_at=services.clock() + timedelta(hours=2), by=estate["tech"])

    async def give_back(receiver):
        with unscoped():
            return await services.check_in_keys(keyset, returned_by="业主1", receiver=receiver, sealed=True)

    results = await asyncio.gather(give_back(estate["tech"]), give_back(estate["agent"]), return_exceptions=True)
    assert sum(isinstance(r, KeyCheckout) for r in results) == 1, results
    assert sum(isinstance(r, services.HandoverError) for r in results) == 1
    back = await _key(keyset.id)
    assert back.state == KeyState.IN and custody_is_named(back)


async def test_lost_keys_are_rekeyed_and_the_cabinet_audit_records_discrepancies(make_client, estate):
    tech = await login(make_client, "tech")
    lost = await _register(tech, estate, tag="K-101-A")
    spare = await _register(tech, estate, tag="K-101-B")
    other = await _register(tech, estate, tag="K-102-A", unit="1-1-102")

    response = await tech.form(f"/p/EAST/handover/keys/{lost.id}/lost", {"lost_note": "交接时遗失"})
    assert response.status_code == 303
    lost = await _key(lost.id)
    assert lost.state == KeyState.LOST and lost.custodian_name == "刘师傅" and custody_is_named(lost)
    response = await tech.form(f"/p/EAST/handover/keys/{lost.id}/rekey", {
        "tag": "K-101-C", "count": "3", "slot": "A-01", "keeper": str(estate["tech"].id),
    })
    assert response.status_code == 303
    assert (await _key(lost.id)).state == KeyState.RETIRED
    assert (await _key(spare.id)).state == KeyState.RETIRED  # the old lock's spare set is void too
    with unscoped():
        new = await KeySet.get(tag="K-101-C")
    assert new.state == KeyState.IN and new.replaces_id == lost.id

    response = await tech.form("/p/EAST/handover/audits", {})
    assert response.status_code == 303
    with unscoped():
        audit = await CabinetAudit.get()
        lines = {line.keyset_id: line for line in await AuditLine.filter(audit_id=audit.id)}
    assert set(lines) == {new.id, other.id}
    # Finishing before every slot is confirmed is refused.
    response = await tech.form(f"/p/EAST/handover/audits/{audit.id}/finish", {})
    assert response.status_code == 422
    response = await tech.form(f"/p/EAST/handover/audits/{audit.id}/lines/{lines[other.id].id}", {"finding": "missing"})
    assert response.status_code == 422  # a discrepancy needs a description
    await tech.form(f"/p/EAST/handover/audits/{audit.id}/lines/{lines[other.id].id}", {"finding": "missing", "note": "格子空"})
    await tech.form(f"/p/EAST/handover/audits/{audit.id}/lines/{lines[new.id].id}", {"finding": "present"})
    response = await tech.form(f"/p/EAST/handover/audits/{audit.id}/finish", {})
    assert response.status_code == 303
    with unscoped():
        audit = await CabinetAudit.get(id=audit.id)
        assert audit.discrepancies == 1
        assert (await AuditLine.get(id=lines[other.id].id)).finding == AuditFinding.MISSING
        history = await timeline.history(await KeySet.get(id=other.id))
    assert history[0].kind == "audit" and "格子空" in history[0].body
