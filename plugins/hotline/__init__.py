"""Service hotline (服务热线 / 400 呼叫中心): unified intake, work orders and callbacks, telephony."""

from __future__ import annotations

from core.api import HOOK_API_VERSION, JobSpec, Manifest, Permission, hookimpl, lazy_gettext as _

MANIFEST = Manifest(
    name="hotline",
    label=_("Hotline"),
    version="0.1.0",
    hook_api=HOOK_API_VERSION,
    description=_("Intake from every channel, numbered work orders with SLA deadlines, dispatch and callbacks."),
)


@hookimpl
def register_models():
    return ["plugins.hotline.models", "plugins.hotline.call_models"]  # telephony: calls, duty log, FAQ


# Work orders and callbacks ------------------------------------------------------------


@hookimpl
def register_permissions():
    return [
        Permission("hotline.view", _("See work orders and callbacks"), ("admin", "manager", "agent", "staff", "readonly")),
        Permission("hotline.intake", _("Record contacts as work orders"), ("admin", "manager", "agent")),
        Permission("hotline.dispatch", _("Dispatch work orders to departments"), ("admin", "manager", "agent")),
        Permission("hotline.work", _("Work on assigned work orders (department staff)"), ("admin", "manager", "staff")),
        Permission("hotline.callback", _("Call customers back and record their verdict"), ("admin", "manager", "agent")),
        Permission("hotline.supervise", _("Coordinate escalated work orders and receive overdue alerts"), ("admin", "manager")),
        Permission("hotline.manage", _("Manage request categories and their deadlines"), ("admin", "manager")),
        # telephony: duty log and FAQ
        Permission("hotline.duty", _("Keep the duty log and hand over shifts"), ("admin", "manager", "agent")),
        Permission("hotline.review_duty", _("Review the daily duty log"), ("admin", "manager")),
        Permission("hotline.faq", _("Search the FAQ and ask for missing answers"), ("admin", "manager", "agent", "staff")),
        Permission("hotline.manage_faq", _("Answer FAQ questions and write articles"), ("admin", "manager")),
        Permission("hotline.manage_telephony", _("Connect PBXs and manage their secrets"), ("admin",)),
    ]


@hookimpl
def register_jobs():
    from plugins.hotline import jobs, telephony

    return [
        JobSpec("hotline.sla_watch", "*/5 * * * *", jobs.sla_watch, label=_("Work-order deadline warnings and escalation")),
        JobSpec("hotline.callback_reminders", "*/15 * * * *", jobs.callback_reminders, label=_("Remind agents of due callbacks")),
        JobSpec("hotline.daily_summary", "0 8 * * *", jobs.daily_summary, label=_("Daily hotline summary to managers"), catch_up="skip"),
        # telephony: forget processed PBX event ids once their requests are too old to replay
        JobSpec("hotline.pbx_receipts_cleanup", "40 3 * * *", telephony.cleanup_receipts, label=_("Delete old PBX event receipts"), per_project=False, catch_up="skip"),
    ]


@hookimpl
def callback_task_requested(project, customer_id, unit_id, reason, due_at, source):
    """Missed calls, dunning calls and other plugins' follow-ups join the callback queue."""
    from plugins.hotline.workorders import request_callback

    async def create():
        task = await request_callback(
            project.id, customer_id=customer_id, unit_id=unit_id, reason=reason, due_at=due_at, source=source
        )
        return task.id

    return create()


@hookimpl
def domain_event(event):
    """A return visit that asked for a work order opens one (runs in the visit's transaction)."""
    from plugins.hotline.workorders import open_from_return_visit

    if event.name == "activities.return_visit_recorded" and event.data.get("follow_up") == "work_order":
        return open_from_return_visit(event)
    return None


# One implementation per hook in this module (pluggy's rule): the telephony half adds its
# routes, entries and tiles to the lists below.


@hookimpl
def register_routes():
    from core.api import route
    from plugins.hotline import duty, knowledge, telephony, views as v

    view, order = "hotline.view", "hotline.WorkOrder"
    return [
        route("/", v.order_list, name="hotline_orders", permission=view),
        route("/mine", v.my_order_list, name="hotline_my_orders", permission="hotline.work"),
        route("/intake", v.intake_page, name="hotline_intake", permission="hotline.intake"),
        route("/intake", v.intake_submit, methods=["POST"], name="hotline_intake_submit", permission="hotline.intake"),
        route("/intake/customers", v.customer_lookup, name="hotline_customer_lookup", permission="hotline.intake"),
        route("/orders/{id:int}", v.order_detail, name="hotline_order", permission=view, model=order),
        route("/orders/{id:int}/dispatch", v.dispatch_submit, methods=["POST"], permission="hotline.dispatch", model=order),
        route("/orders/{id:int}/start", v.start_submit, methods=["POST"], permission="hotline.work", model=order),
        route(
            "/orders/{id:int}/assignments/{assignment:int}/done", v.assignment_done_submit, methods=["POST"],
            permission="hotline.work", model=order,
        ),
        route("/orders/{id:int}/materials", v.material_submit, methods=["POST"], permission="hotline.work", model=order),
        route("/orders/{id:int}/resolve", v.resolve_submit, methods=["POST"], permission="hotline.intake", model=order),
        route("/orders/{id:int}/close", v.close_submit, methods=["POST"], permission="hotline.callback", model=order),
        route("/orders/{id:int}/reopen", v.reopen_submit, methods=["POST"], permission="hotline.dispatch", model=order),
        route("/callbacks", v.callback_queue, name="hotline_callbacks", permission="hotline.callback"),
        route("/callbacks/{id:int}", v.callback_page, name="hotline_callback", permission="hotline.callback", model="hotline.CallbackTask"),
        route(
            "/callbacks/{id:int}", v.callback_submit, methods=["POST"], permission="hotline.callback",
            model="hotline.CallbackTask",
        ),
        route("/categories", v.category_list, name="hotline_categories", permission="hotline.manage"),
        route("/categories/new", v.category_new, permission="hotline.manage"),
        route("/categories/new", v.category_save, methods=["POST"], permission="hotline.manage"),
        route("/categories/{id:int}", v.category_edit, permission="hotline.manage", model="hotline.Category"),
        route("/categories/{id:int}", v.category_save, methods=["POST"], permission="hotline.manage", model="hotline.Category"),
        *telephony.project_routes(),  # telephony: call log
        *duty.routes(),  # telephony: duty log
        *knowledge.routes(),  # telephony: FAQ
    ]


@hookimpl
def register_api_routes():
    from plugins.hotline import api

    return api.routes()


@hookimpl
def register_events():
    from core.api import EventSpec

    return [
        EventSpec("hotline.complaint_received", _("Complaint received by the hotline"),
                  _("A contact classified as a complaint was recorded as a work order.")),
        EventSpec("hotline.work_order_closed", _("Work order closed"), _("Closed after a satisfied callback.")),
        EventSpec("hotline.work_order_reopened", _("Work order re-opened"),
                  _("The customer was not satisfied, or staff re-opened it.")),
    ]


@hookimpl
def register_global_routes():
    from core.api import route
    from plugins.hotline import telephony, views as v

    # Head-office agents take calls for every estate: they choose the caller's estate first.
    return [
        route("/intake", v.head_office_intake, name="hotline_choose_estate", permission="hotline.intake"),
        *telephony.global_routes(),  # telephony: PBX webhook, screen pop, head-office call log
    ]


@hookimpl
def navigation(request, project):
    from core.api import NavItem

    if project is None:
        return []
    base = f"/p/{project.code}/hotline/"
    return [
        NavItem(_("Record a contact"), base + "intake", icon="phone", permission="hotline.intake", order=20),
        NavItem(_("Work orders"), base, icon="clipboard", permission="hotline.view", order=21),
        NavItem(_("My work orders"), base + "mine", icon="wrench", permission="hotline.work", order=22),
        NavItem(_("Callback queue"), base + "callbacks", icon="bell", permission="hotline.callback", order=23),
        NavItem(_("Call log"), base + "calls", icon="calls", permission="hotline.view", order=24),  # telephony
        NavItem(_("Duty log"), base + "duty", icon="log", permission="hotline.duty", order=25),  # telephony
        NavItem(_("FAQ"), base + "faq", icon="faq", permission="hotline.faq", order=26),  # telephony
        NavItem(_("Request categories"), base + "categories", icon="tag", group="admin", permission="hotline.manage", order=850),
        NavItem(_("Telephony"), "/hotline/pbx", icon="calls", group="admin", permission="hotline.manage_telephony", order=851),  # telephony
    ]


@hookimpl
def register_call_adapters():
    """telephony: the built-in generic JSON event format; other plugins add their PBX's."""
    from plugins.hotline.telephony import GenericJsonAdapter

    return [GenericJsonAdapter()]


@hookimpl
def dashboard_tiles(request, project):
    from plugins.hotline import stats

    return stats.dashboard_tiles(project)


@hookimpl
def customer_sections(request, customer):
    from plugins.hotline import stats

    async def sections():
        return [await stats.customer_section(customer)]

    return sections()


@hookimpl
def search(request, query, project_ids):
    from plugins.hotline import stats

    return stats.search(query, project_ids)


@hookimpl
def demo_data(project, rng):
    from plugins.hotline import demo

    return demo.load(project, rng)
