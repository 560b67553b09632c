"""The handover's JSON API (read only): where each key set is and who holds it, and each unit's handover status.

For the owners' mini-program ("your keys are with …", "your appointment is
at …") and the front desk's or the ERP's dashboards. Changes go through the
pages, which record custody and appointments with their checks.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from core.api import MAX_ID, ApiCall, ApiModel, ListQuery, Page, api_route, paginate
from plugins.handover import services
from plugins.handover.models import (
    Appointment, HandoverBatch, HandoverState, HolderKind, KeyCheckout, KeySet, KeyState, TimeSlot, UnitHandover,
)


KeyStateName = Literal[tuple(KeyState.CHOICES)]  # type: ignore[valid-type]
HolderKindName = Literal[tuple(HolderKind.CHOICES)]  # type: ignore[valid-type]
HandoverStateName = Literal[tuple(HandoverState.CHOICES)]  # type: ignore[valid-type]


class CustodianOut(ApiModel):
    kind: HolderKindName = Field(description="staff (in the cabinet or with staff), owner or contractor.")
    name: str = Field(description="The person or company holding the keys.")
    customer_id: int | None = Field(description="The owner holding them, when kind is owner.")


class CheckoutOut(ApiModel):
    id: int
    holder_kind: HolderKindName
    holder_name: str
    holder_customer_id: int | None
    purpose: str
    out_at: datetime = Field(description="Since when the holder has the keys.")
    due_at: datetime = Field(description="When the keys are due back in the cabinet.")


class KeySetOut(ApiModel):
    id: int
    tag: str
    unit_id: int
    kind: str = Field(description="entrance, mailbox, garage, card or other.")
    count: int = Field(description="Keys in the set.")
    sealed: bool
    slot: str = Field(description="The cabinet slot it belongs in.")
    state: KeyStateName = Field(description="in the cabinet, out (checked out), owner (handed over), lost or retired.")
    custodian: CustodianOut = Field(description="Who answers for the set now.")
    checkout: CheckoutOut | None = Field(description="The open checkout while the set is out, else null.")
    replaces_id: int | None = Field(description="The lost set this one replaced after re-keying.")
    created_at: datetime
    updated_at: datetime | None
    web_path: str = Field(description="The set's page in Courtyard, relative to the server.")


class KeySetQuery(ListQuery):
    unit_id: int | None = Field(None, ge=1, le=MAX_ID, description="Only the key sets of this unit.")
    state: KeyStateName | None = Field(None, description="Only key sets in this state.")


class BatchRef(ApiModel):
    id: int
    name: str


class AppointmentOut(ApiModel):
    id: int
    state: str = Field(description="booked or checked_in.")
    starts_at: datetime
    ends_at: datetime
    visitors: int
    via: str = Field(description="staff, or link (booked by the owner through the emailed link).")
    checked_in_at: datetime | None


class HandoverOut(ApiModel):
    id: int
    unit_id: int
    owner_id: int | None = Field(description="The customer who books and signs.")
    batch: BatchRef
    state: HandoverStateName = Field(description="planned, booked, checked_in, inspecting or accepted (handed over).")
    appointment: AppointmentOut | None = Field(description="The current appointment (booked or checked in), if any.")
    accepted_at: datetime | None = Field(description="When the owner signed for the unit.")
    updated_at: datetime | None
    web_path: str = Field(description="The handover's page in Courtyard, relative to the server.")


class HandoverQuery(ListQuery):
    unit_id: int | None = Field(None, ge=1, le=MAX_ID, description="The handover of this unit.")
    state: HandoverStateName | None = Field(None, description="Only handovers in this state.")
    batch_id: int | None = Field(None, ge=1, le=MAX_ID, description="Only this batch's handovers.")


def _custodian(keyset: KeySet) -> dict:
    customer = keyset.custodian_customer_id if keyset.custodian_kind == HolderKind.OWNER else None
    return {"kind": keyset.custodian_kind, "name": keyset.custodian_name, "customer_id": customer}


async def _key_sets_out(call: ApiCall, keysets: list[KeySet]) -> list[dict]:
    ids = [k.id for k in keysets if k.state == KeyState.OUT]
    # `open_for` marks the open checkout of each set (at most one, by a unique column).
    checkouts = {c.open_for: c for c in await KeyCheckout.filter(open_for__in=ids)} if ids else {}
    base = f"/p/{call.project.code}/handover/keys/"
    return [
        {"id": k.id, "tag": k.tag, "unit_id": k.unit_id, "kind": k.kind, "count": k.count, "sealed": k.sealed,
         "slot": k.slot, "state": k.state, "custodian": _custodian(k), "checkout": checkouts.get(k.id),
         "replaces_id": k.replaces_id, "created_at": k.created_at, "updated_at": k.updated_at,
         "web_path": f"{base}{k.id}"}
        for k in keysets
    ]


async def _handovers_out(call: ApiCall, handovers: list[UnitHandover]) -> list[dict]:
    ids = [h.id for h in handovers]
    # `active_for` holds the handover's id while its appointment counts (booked or checked in).
    appointments = {a.active_for: a for a in await Appointment.filter(active_for__in=ids)} if ids else {}
    slot_ids = list({a.slot_id for a in appointments.values()})
    slots = {s.id: s for s in await TimeSlot.filter(id__in=slot_ids)} if slot_ids else {}
    batch_ids = list({h.batch_id for h in handovers})
    batches = {b.id: b for b in await HandoverBatch.filter(id__in=batch_ids)} if batch_ids else {}
    base = f"/p/{call.project.code}/handover/handovers/"
    out = []
    for h in handovers:
        appointment = appointments.get(h.id)
        current = None
        if appointment is not None:
            slot = slots[appointment.slot_id]
            current = {
                "id": appointment.id, "state": appointment.state, "visitors": appointment.visitors,
                "via": appointment.via, "checked_in_at": appointment.checked_in_at,
                "starts_at": services.local_datetime(call.project, slot.day, slot.start_minute),
                "ends_at": services.local_datetime(call.project, slot.day, slot.end_minute),
            }
        out.append({
            "id": h.id, "unit_id": h.unit_id, "owner_id": h.owner_id, "batch": batches[h.batch_id], "state": h.state,
            "appointment": current, "accepted_at": h.accepted_at, "updated_at": h.updated_at,
            "web_path": f"{base}{h.id}",
        })
    return out


async def list_key_sets(call: ApiCall) -> dict:
    query: KeySetQuery = call.query
    keysets = KeySet.filter(**query.sent("unit_id", "state"))
    return await paginate(call, keysets, convert=lambda rows: _key_sets_out(call, rows))


async def get_key_set(call: ApiCall) -> dict:
    return (await _key_sets_out(call, [call.record]))[0]


async def list_handovers(call: ApiCall) -> dict:
    query: HandoverQuery = call.query
    handovers = UnitHandover.filter(**query.sent("unit_id", "state", "batch_id"))
    return await paginate(call, handovers, convert=lambda rows: _handovers_out(call, rows))


async def get_handover(call: ApiCall) -> dict:
    return (await _handovers_out(call, [call.record]))[0]


def routes():
    read = "handover:read"
    return [
        api_route("GET", "/key-sets", list_key_sets, scope=read, query=KeySetQuery, response=Page[KeySetOut],
                  summary="Key sets and who holds them, in order of change",
                  description="Every checkout, return, handing to the owner, loss and re-keying changes `updated_at`: "
                              "pass the last one seen as `updated_since` to get only what changed."),
        api_route("GET", "/key-sets/{id:int}", get_key_set, scope=read, response=KeySetOut, model="handover.KeySet",
                  summary="A key set, with its custodian and open checkout"),
        api_route("GET", "/handovers", list_handovers, scope=read, query=HandoverQuery, response=Page[HandoverOut],
                  summary="Units' handover status, in order of change",
                  description="One per unit of a handover batch. Booking, moving, cancelling and checking in an "
                              "appointment, starting the inspection, the owner's signature and a change of owner "
                              "change `updated_at`."),
        api_route("GET", "/handovers/{id:int}", get_handover, scope=read, response=HandoverOut,
                  model="handover.UnitHandover", summary="A unit's handover status, with its appointment"),
    ]
