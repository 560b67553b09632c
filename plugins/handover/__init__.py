"""Unit handover and key custody (交房 / 钥匙管理): appointments, inspection, defects, contractors, keys."""

from __future__ import annotations

from core.api import HOOK_API_VERSION, Manifest, Permission, hookimpl, lazy_gettext as _

MANIFEST = Manifest(
    name="handover",
    label=_("Handover"),
    version="0.1.0",
    hook_api=HOOK_API_VERSION,
    description=_("Handover appointments by batch and time slot, inspection and defects, contractors, key custody."),
)


@hookimpl
def register_models():
    return ["plugins.handover.models"]


@hookimpl
def register_permissions():
    return [
        Permission("handover.view", _("See handovers, defects and keys"), ("admin", "manager", "agent", "staff", "readonly")),
        Permission("handover.book", _("Book, move and cancel handover appointments, check owners in"), ("admin", "manager", "agent")),
        Permission("handover.inspect", _("Inspect units, record and follow up defects"), ("admin", "manager", "staff")),
        Permission("handover.keys", _("Check key sets out and in, audit the key cabinet"), ("admin", "manager", "staff")),
        Permission("handover.manage", _("Plan batches, edit checklists and contractors, record owners' acceptance; receive overdue alerts"), ("admin", "manager")),
    ]


@hookimpl
def register_events():
    from core.api import EventSpec

    return [
        EventSpec("handover.key_checked_out", _("Keys checked out"),
                  _("A key set left the cabinet with an owner, a contractor or a staff member.")),
        EventSpec("handover.keys_returned", _("Keys returned"), _("A checked-out key set came back to the cabinet.")),
    ]


@hookimpl
def register_api_routes():
    from plugins.handover import api

    return api.routes()


@hookimpl
def register_routes():
    from core.api import route
    from plugins.handover import inspect_views as i, key_views as k, views as v

    view, book, inspect, keys, manage = (f"handover.{p}" for p in ("view", "book", "inspect", "keys", "manage"))
    batch, handover, appointment = "handover.HandoverBatch", "handover.UnitHandover", "handover.Appointment"
    inspection, defect, contractor = "handover.Inspection", "handover.Defect", "handover.Contractor"
    keyset, audit = "handover.KeySet", "handover.CabinetAudit"
    post = ["POST"]
    return [
        route("/", v.batch_list, name="handover", permission=view),
        route("/batches/new", v.batch_new, permission=manage),
        route("/batches/new", v.batch_create, methods=post, permission=manage),
        route("/batches/{id:int}", v.batch_detail, permission=view, model=batch),
        route("/batches/{id:int}/slots", v.slots_add, methods=post, permission=manage, model=batch),
        route("/batches/{id:int}/booking", v.booking_toggle, methods=post, permission=manage, model=batch),
        route("/batches/{id:int}/schedule", v.day_schedule, permission=view, model=batch),
        route("/batches/{id:int}/invite", v.invite_submit, methods=post, permission=book, model=batch),
        route("/handovers/{id:int}/invite", v.invite_submit, methods=post, permission=book, model=handover),
        route("/handovers", v.handover_list, name="handover_units", permission=view),
        route("/handovers/{id:int}", v.handover_detail, permission=view, model=handover),
        route("/handovers/{id:int}/book", v.book_submit, methods=post, permission=book, model=handover),
        route("/handovers/{id:int}/owner", v.owner_submit, methods=post, permission=book, model=handover),
        route("/handovers/{id:int}/inspection", i.inspection_start, methods=post, permission=inspect, model=handover),
        route("/handovers/{id:int}/accept", v.accept_submit, methods=post, permission=manage, model=handover),
        route("/handovers/{id:int}/form", v.handover_form, permission=view, model=handover),
        route("/handovers/{id:int}/keys-to-owner", v.keys_to_owner_submit, methods=post, permission=keys, model=handover),
        route("/handovers/{id:int}/key-receipt", v.key_receipt, permission=view, model=handover),
        route("/appointments/{id:int}/move", v.move_submit, methods=post, permission=book, model=appointment),
        route("/appointments/{id:int}/cancel", v.cancel_submit, methods=post, permission=book, model=appointment),
        route("/appointments/{id:int}/checkin", v.checkin_submit, methods=post, permission=book, model=appointment),
        route("/checklists", i.checklist_list, permission=manage),
        route("/checklists/new", i.checklist_new, permission=manage),
        route("/checklists/new", i.checklist_save, methods=post, permission=manage),
        route("/checklists/{id:int}", i.checklist_edit, permission=manage, model="handover.ChecklistTemplate"),
        route("/checklists/{id:int}", i.checklist_save, methods=post, permission=manage, model="handover.ChecklistTemplate"),
        route("/inspections/{id:int}", i.inspection_detail, permission=view, model=inspection),
        route("/inspections/{id:int}/items/{item:int}/ok", i.item_ok, methods=post, permission=inspect, model=inspection),
        route("/inspections/{id:int}/defects", i.defect_create, methods=post, permission=inspect, model=inspection),
        route("/inspections/{id:int}/finish", i.inspection_finish, methods=post, permission=inspect, model=inspection),
        route("/defects", i.defect_list, name="handover_defects", permission=view),
        route("/defects/{id:int}", i.defect_detail, permission=view, model=defect),
        route("/defects/{id:int}/{step:str}", i.defect_step, methods=post, permission=inspect, model=defect),
        route("/contractors", i.contractor_list, name="handover_contractors", permission=view),
        route("/contractors/new", i.contractor_new, permission=manage),
        route("/contractors/new", i.contractor_save, methods=post, permission=manage),
        route("/contractors/{id:int}", i.contractor_detail, permission=view, model=contractor),
        route("/contractors/{id:int}/edit", i.contractor_edit, permission=manage, model=contractor),
        route("/contractors/{id:int}/edit", i.contractor_save, methods=post, permission=manage, model=contractor),
        route("/contractors/{id:int}/contacts", i.contact_add, methods=post, permission=manage, model=contractor),
        route("/keys", k.key_list, name="handover_keys", permission=view),
        route("/keys/new", k.key_new, permission=keys),
        route("/keys/new", k.key_create, methods=post, permission=keys),
        route("/keys/{id:int}", k.key_detail, permission=view, model=keyset),
        route("/keys/{id:int}/checkout", k.checkout_submit, methods=post, permission=keys, model=keyset),
        route("/keys/{id:int}/return", k.return_submit, methods=post, permission=keys, model=keyset),
        route("/keys/{id:int}/lost", k.lost_submit, methods=post, permission=keys, model=keyset),
        route("/keys/{id:int}/rekey", k.rekey_submit, methods=post, permission=keys, model=keyset),
        route("/checkouts", k.checkout_list, permission=view),
        route("/checkouts/{id:int}/receipt", k.checkout_receipt, permission=view, model="handover.KeyCheckout"),
        route("/audits", k.audit_list, permission=keys),
        route("/audits", k.audit_start, methods=post, permission=keys),
        route("/audits/{id:int}", k.audit_detail, permission=keys, model=audit),
        route("/audits/{id:int}/lines/{line:int}", k.audit_line_submit, methods=post, permission=keys, model=audit),
        route("/audits/{id:int}/finish", k.audit_finish, methods=post, permission=keys, model=audit),
    ]


@hookimpl
def register_global_routes():
    from core.api import route
    from plugins.handover import public

    # Owners open these from their email: no login, the signed link is the key.
    return [
        route("/appointment/{token}", public.booking_page, public=True),
        route("/appointment/{token}", public.booking_submit, methods=["POST"], public=True),
    ]


@hookimpl
def register_jobs():
    from core.api import JobSpec
    from plugins.handover import jobs

    return [
        JobSpec("handover.appointment_reminders", "0 18 * * *", jobs.appointment_reminders,
                label=_("Remind owners of tomorrow's handover appointments"), catch_up="once"),
        JobSpec("handover.overdue_keys", "*/15 * * * *", jobs.overdue_keys,
                label=_("Alert custodians and managers of overdue keys"), catch_up="once"),
        JobSpec("handover.defect_deadlines", "0 8 * * *", jobs.defect_deadlines,
                label=_("Defect repair deadline reminders and escalation"), catch_up="once"),
    ]


@hookimpl
def navigation(request, project):
    from core.api import NavItem

    if project is None:
        return []
    base = f"/p/{project.code}/handover/"
    return [
        NavItem(_("Handover"), base, icon="calendar", permission="handover.view", order=50),
        NavItem(_("Defects"), base + "defects", icon="wrench", permission="handover.view", order=51),
        NavItem(_("Keys"), base + "keys", icon="key", permission="handover.view", order=52),
        NavItem(_("Contractors"), base + "contractors", icon="users", permission="handover.view", order=53),
        NavItem(_("Inspection checklists"), base + "checklists", icon="list", group="admin", permission="handover.manage", order=860),
    ]


@hookimpl
def dashboard_tiles(request, project):
    from plugins.handover import stats

    return stats.dashboard_tiles(project)


@hookimpl
def customer_sections(request, customer):
    from plugins.handover import stats

    async def sections():
        return [await stats.customer_section(customer)]

    return sections()


@hookimpl
def search(request, query, project_ids):
    from plugins.handover import stats

    return stats.search(query, project_ids)


@hookimpl
def demo_data(project, rng):
    from plugins.handover import demo

    return demo.load(project, rng)
