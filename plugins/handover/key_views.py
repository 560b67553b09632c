"""Pages of key custody: key sets, checkouts and returns, loss and re-keying, cabinet audits."""

from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo

from starlette.requests import Request
from starlette.responses import Response

from core.api import (
    Column,
    Customer,
    CustomerUnit,
    Filter,
    ListView,
    Unit,
    User,
    ctx,
    errors_for,
    form_data,
    gettext,
    lazy_gettext as _,
    redirect,
    render,
    timeline,
    users_with_permission,
)
from plugins.handover import forms, services
from plugins.handover.models import (
    AuditFinding,
    AuditLine,
    AuditState,
    CabinetAudit,
    Contractor,
    HolderKind,
    KeyCheckout,
    KeyKind,
    KeySet,
    KeyState,
)
from plugins.handover.services import HandoverError
from plugins.handover.views import base, can

# Key sets -----------------------------------------------------------------------------------


def _overdue_checkouts(queryset, value: bool, request: Request):
    late = {"open_for__isnull": False, "due_at__lt": services.clock()}
    return queryset.filter(**late) if value else queryset.exclude(**late)


keys_list = ListView(
    "handover-keys", _("Key sets"), model=KeySet,
    columns=[
        Column("tag", _("Tag"), sort=True, link=lambda k, r: f"{base(r)}keys/{k.id}"),
        Column("unit", _("Unit"), field="unit.code", sort="unit__code"),
        Column("kind", _("Kind"), format="choice", choices=KeyKind.CHOICES, sort=True),
        Column("count", _("Keys"), format="number"),
        Column("slot", _("Cabinet slot"), sort=True),
        Column("state", _("Status"), format="choice", choices=KeyState.CHOICES, sort=True),
        Column("custodian_name", _("Custodian"), sort=True),
        Column("sealed", _("Sealed"), format="boolean"),
    ],
    filters=[Filter.choice("state", _("Status"), KeyState.CHOICES), Filter.choice("kind", _("Kind"), KeyKind.CHOICES)],
    search=["tag", "unit__code", "custodian_name", "slot"], select_related=["unit"], default_sort="tag",
    search_placeholder=_("Tag, unit, slot or custodian"),
)


async def key_list(request: Request) -> Response:
    actions = []
    if can(request, "handover.keys"):
        actions = [(gettext("Register key set"), f"{base(request)}keys/new"),
                   (gettext("Checkouts"), f"{base(request)}checkouts"), (gettext("Cabinet audits"), f"{base(request)}audits")]
    return await keys_list.response(request, actions=actions)


checkouts_list = ListView(
    "handover-checkouts", _("Key checkouts"), model=KeyCheckout,
    columns=[
        Column("keyset", _("Tag"), field="keyset.tag", sort="keyset__tag", link=lambda c, r: f"{base(r)}keys/{c.keyset_id}"),
        Column("holder_name", _("Taken by"), sort=True),
        Column("holder_kind", _("As"), format="choice", choices=HolderKind.CHOICES),
        Column("purpose", _("Purpose"), wrap=True),
        Column("out_at", _("Out"), format="datetime", sort=True),
        Column("due_at", _("Due back"), format="datetime", sort=True),
        Column("returned_at", _("Returned"), format="datetime", sort=True),
        Column("returned_by_name", _("Returned by")),
        Column("received_by", _("Received by"), field="received_by.display_name"),
    ],
    filters=[Filter.boolean("overdue", _("Overdue"), apply=_overdue_checkouts),
             Filter.boolean("open", _("Still out"), field="open_for__isnull", apply=lambda q, v: q.filter(open_for__isnull=not v)),
             Filter.date_range("out", _("Out"), field="out_at")],
    search=["keyset__tag", "holder_name", "purpose"], select_related=["keyset", "received_by"], default_sort="-out_at",
)


async def checkout_list(request: Request) -> Response:
    return await checkouts_list.response(request)


async def _staff(request: Request) -> list[User]:
    return await users_with_permission(ctx(request).project.id, "handover.view")


async def _register_form(request: Request, values=None, errors=None, status=200) -> Response:
    return await render(request, "handover/key_form.html", {
        "base": base(request), "values": values or {"count": 2, "kind": KeyKind.ENTRANCE, "keeper": ctx(request).principal.id},
        "errors": errors or {}, "kinds": KeyKind.CHOICES, "staff": [(u.id, str(u)) for u in await _staff(request)],
    }, status_code=status)


async def key_new(request: Request) -> Response:
    return await _register_form(request)


async def _keeper(request: Request, values: dict, name: str = "keeper") -> User:
    keeper_id = forms.optional_id(values, name)
    keeper = next((u for u in await _staff(request) if u.id == keeper_id), None)
    if keeper is None:
        raise HandoverError(gettext("Choose the staff member who keeps the keys."), name)
    return keeper


async def key_create(request: Request) -> Response:
    values = await form_data(request)
    try:
        code = forms.text(values, "unit", 32, required=True, label_missing=gettext("Enter the unit."))
        unit = await Unit.get_or_none(code=code)
        if unit is None:
            raise HandoverError(gettext("There is no unit %(code)s.", code=code), "unit")
        keyset = await services.register_keyset(
            unit, tag=forms.text(values, "tag", 32), kind=forms.choice(values, "kind", KeyKind.CHOICES),
            count=forms.integer(values, "count", 1, 50), slot=forms.text(values, "slot", 16),
            keeper=await _keeper(request, values), sealed=forms.checked(values, "sealed"), by=ctx(request).principal,
        )
    except HandoverError as exc:
        return await _register_form(request, values, {exc.field: exc.message}, 422)
    return redirect(request, f"{base(request)}keys/{keyset.id}", gettext("Key set %(tag)s registered.", tag=keyset.tag))


# The forms the key set's page offers in each state (key.html shows exactly these).
KEY_FORMS = {KeyState.IN: {"checkout", "lost"}, KeyState.OUT: {"return", "lost"}, KeyState.LOST: {"rekey"}}


async def _key_page(request: Request, keyset: KeySet, *, form: str = "", values=None, errors=None, status=200) -> Response:
    await keyset.fetch_related("unit", "replaces")
    checkouts = await KeyCheckout.filter(keyset_id=keyset.id).prefetch_related("issued_by", "received_by").order_by("-id")
    open_checkout = next((c for c in checkouts if c.open_for is not None), None)
    linked = await CustomerUnit.filter(unit_id=keyset.unit_id, end_date__isnull=True).prefetch_related("customer")
    project = ctx(request).project
    on_page = KEY_FORMS.get(keyset.state, set()) if can(request, "handover.keys") else set()
    default_due = services.clock().astimezone(ZoneInfo(project.timezone)).replace(second=0, microsecond=0) + timedelta(hours=4)
    return await render(request, "handover/key.html", {
        "base": base(request), "keyset": keyset, "checkouts": checkouts, "open_checkout": open_checkout,
        "KeyState": KeyState, "HolderKind": HolderKind, "kinds": KeyKind.CHOICES, "now": services.clock(),
        "staff": [(u.id, str(u)) for u in await _staff(request)],
        "customers": [(link.customer.id, link.customer.name) for link in linked],
        "contractors": [(c.id, c.name) for c in await Contractor.filter(is_active=True)],
        "can_keys": can(request, "handover.keys"), "form": form, "on_page": on_page,
        "errors": errors_for(errors, form, on_page),
        "values": values or {"due_at": default_due.strftime("%Y-%m-%dT%H:%M"), "sealed": True, "count": keyset.count,
                             "keeper": ctx(request).principal.id, "returned_by": open_checkout.holder_name if open_checkout else ""},
        **await timeline.context(request, keyset),
    }, status_code=status)


async def key_detail(request: Request) -> Response:
    return await _key_page(request, request.state.record)


async def _holder(request: Request, values: dict, kind: str):
    holder_id = forms.optional_id(values, {"staff": "staff", "owner": "customer", "contractor": "contractor"}[kind])
    if kind == HolderKind.STAFF:
        return next((u for u in await _staff(request) if u.id == holder_id), None)
    if kind == HolderKind.OWNER:
        return await Customer.get_or_none(id=holder_id) if holder_id else None
    return await Contractor.get_or_none(id=holder_id, is_active=True) if holder_id else None


async def checkout_submit(request: Request) -> Response:
    keyset = request.state.record
    values = await form_data(request)
    try:
        kind = forms.choice(values, "holder_kind", HolderKind.CHOICES)
        checkout = await services.check_out(
            keyset, holder_kind=kind, holder=await _holder(request, values, kind), purpose=forms.text(values, "purpose", 255),
            due_at=forms.local_moment(values, "due_at", ctx(request).project.timezone), by=ctx(request).principal,
        )
    except HandoverError as exc:
        return await _key_page(request, keyset, form="checkout", values=values, errors={exc.field: exc.message}, status=422)
    return redirect(request, f"{base(request)}checkouts/{checkout.id}/receipt",
                    gettext("Key set %(tag)s checked out to %(name)s.", tag=keyset.tag, name=checkout.holder_name))


async def return_submit(request: Request) -> Response:
    keyset = request.state.record
    values = await form_data(request)
    try:
        if keyset.state != KeyState.OUT:  # a page left open: say so, not which field is empty
            raise HandoverError(gettext("Key set %(tag)s is not checked out (%(state)s).", tag=keyset.tag,
                                        state=KeyState.CHOICES[keyset.state]))
        receiver = await _keeper(request, values, "receiver")
        await services.check_in_keys(keyset, returned_by=forms.text(values, "returned_by", 96), receiver=receiver,
                                     sealed=forms.checked(values, "sealed"), slot=forms.text(values, "slot", 16))
    except HandoverError as exc:
        return await _key_page(request, keyset, form="return", values=values, errors={exc.field: exc.message}, status=422)
    return redirect(request, f"{base(request)}keys/{keyset.id}", gettext("Key set %(tag)s is back in the cabinet.", tag=keyset.tag))


async def lost_submit(request: Request) -> Response:
    keyset = request.state.record
    values = await form_data(request)
    try:
        if keyset.state not in (KeyState.IN, KeyState.OUT):
            raise HandoverError(gettext("Only a key set in the company's custody can be reported lost."))
        await services.report_lost(keyset, by=ctx(request).principal, note=forms.text(values, "lost_note", 255))
    except HandoverError as exc:
        return await _key_page(request, keyset, form="lost", values=values, errors={exc.field: exc.message}, status=422)
    return redirect(request, f"{base(request)}keys/{keyset.id}", gettext("Key set %(tag)s reported lost.", tag=keyset.tag))


async def rekey_submit(request: Request) -> Response:
    keyset = request.state.record
    values = await form_data(request)
    try:
        new = await services.rekey(keyset, by=ctx(request).principal, tag=forms.text(values, "tag", 32),
                                   count=forms.integer(values, "count", 1, 50), slot=forms.text(values, "slot", 16),
                                   keeper=await _keeper(request, values))
    except HandoverError as exc:
        return await _key_page(request, keyset, form="rekey", values=values, errors={exc.field: exc.message}, status=422)
    return redirect(request, f"{base(request)}keys/{new.id}", gettext("Lock changed: new key set %(tag)s registered.", tag=new.tag))


async def checkout_receipt(request: Request) -> Response:
    """The printable receipt the borrower signs when taking the keys."""
    checkout = request.state.record
    await checkout.fetch_related("keyset", "keyset__unit", "issued_by")
    return await render(request, "handover/key_receipt.html", {
        "base": base(request), "unit": checkout.keyset.unit, "keysets": [checkout.keyset], "checkout": checkout,
        "kinds": KeyKind.CHOICES, "receiver": checkout.holder_name, "at": checkout.out_at,
        "back": f"{base(request)}keys/{checkout.keyset_id}",
    })


# Cabinet audits -------------------------------------------------------------------------------


audits_list = ListView(
    "handover-audits", _("Cabinet audits"), model=CabinetAudit,
    columns=[
        Column("started_at", _("Started"), format="datetime", sort=True, link=lambda a, r: f"{base(r)}audits/{a.id}"),
        Column("started_by", _("By"), field="started_by.display_name"),
        Column("state", _("Status"), format="choice", choices=AuditState.CHOICES, sort=True),
        Column("finished_at", _("Finished"), format="datetime", sort=True),
        Column("discrepancies", _("Discrepancies"), format="number", sort=True),
    ],
    select_related=["started_by"], default_sort="-started_at",
)


async def audit_list(request: Request) -> Response:
    return await audits_list.response(request, template="handover/audits.html", context={"base": base(request)})


async def audit_start(request: Request) -> Response:
    try:
        audit = await services.start_audit(ctx(request).project, by=ctx(request).principal)
    except HandoverError as exc:
        return redirect(request, f"{base(request)}audits", exc.message, level="error")
    return redirect(request, f"{base(request)}audits/{audit.id}", gettext("Audit started: confirm each slot."))


async def _audit_page(request: Request, audit: CabinetAudit, *, line_id=None, values=None, errors=None, status=200):
    lines = await AuditLine.filter(audit_id=audit.id).prefetch_related("keyset", "keyset__unit", "checked_by")
    out = await KeySet.filter(state=KeyState.OUT).prefetch_related("unit").order_by("tag")
    return await render(request, "handover/audit.html", {
        "base": base(request), "audit": audit, "lines": lines, "out": out, "AuditFinding": AuditFinding,
        "AuditState": AuditState, "findings": [(k, v) for k, v in AuditFinding.CHOICES.items() if k != AuditFinding.PENDING],
        "line_id": line_id, "values": values or {}, "errors": errors or {}, "can_keys": can(request, "handover.keys"),
        "done": sum(1 for line in lines if line.finding != AuditFinding.PENDING),
    }, status_code=status)


async def audit_detail(request: Request) -> Response:
    return await _audit_page(request, request.state.record)


async def audit_line_submit(request: Request) -> Response:
    audit = request.state.record
    values = await form_data(request)
    line = await AuditLine.get_or_none(id=request.path_params["line"], audit_id=audit.id)
    try:
        if line is None:
            raise HandoverError(gettext("This slot is not part of the audit."))
        await services.record_finding(line, by=ctx(request).principal, finding=values.get("finding", ""),
                                      note=forms.text(values, "note", 255))
    except HandoverError as exc:
        return await _audit_page(request, audit, line_id=line.id if line else None, values=values,
                                 errors={exc.field: exc.message}, status=422)
    return redirect(request, f"{base(request)}audits/{audit.id}#line-{line.id}")


async def audit_finish(request: Request) -> Response:
    audit = request.state.record
    try:
        found = await services.finish_audit(audit, by=ctx(request).principal)
    except HandoverError as exc:
        return await _audit_page(request, audit, errors={exc.field: exc.message}, status=422)
    return redirect(request, f"{base(request)}audits/{audit.id}",
                    gettext("Audit finished: %(n)s discrepancies recorded.", n=found))
