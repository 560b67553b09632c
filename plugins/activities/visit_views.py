"""Return-visit pages: plans, their call lists, the call list to work through, and recording a call."""

from __future__ import annotations

from datetime import date

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from core.api import (
    Building, Channel, Column, CustomerPhone, Filter, ListView, ctx, gettext, lazy_gettext as _,
    redirect, render, timeline,
)
from plugins.activities import forms, timeutil, visits
from plugins.activities.models import FollowUp, Visit, VisitOutcome, VisitPlan, VisitRound, VisitStatus
from plugins.activities.views import MANAGE, base, can, tz

VISIT = "activities.visit"


PLANS = ListView(
    "activities-plans", _("Return-visit plans"), model=VisitPlan,
    columns=[
        Column("name", _("Plan"), sort=True, link=lambda p, r: f"{base(r)}plans/{p.id}"),
        Column("interval_months", _("Every (months)"), format="number", sort=True),
        Column("next_run_on", _("Next call list"), format="date", sort=True),
        Column("days_to_complete", _("Days to complete"), format="number"),
        Column("is_active", _("Active"), format="boolean"),
    ],
    filters=[Filter.boolean("is_active", _("Active"))],
    search=["name"],
    default_sort="name",
)


async def plan_list(request: Request) -> Response:
    actions = [(gettext("New plan"), base(request) + "plans/new")] if can(request, MANAGE) else []
    return await PLANS.response(request, actions=actions)


async def _plan_form(request, plan, values, errors=None, status_code=200):
    buildings = [(b.id, b.name) for b in await Building.all()]
    return await render(request, "activities/plan_form.html", {
        "plan": plan, "values": values, "errors": errors or {}, "base": base(request), "building_options": buildings,
    }, status_code=status_code)


async def plan_new(request: Request) -> Response:
    today = timeutil.today(tz(request))
    return await _plan_form(request, None, {
        "interval_months": "6", "days_to_complete": "30", "next_run_on": today.isoformat(), "buildings": [],
        "is_active": True,
    })


async def plan_edit(request: Request) -> Response:
    plan: VisitPlan = request.state.record
    return await _plan_form(request, plan, {
        "name": plan.name, "interval_months": str(plan.interval_months), "days_to_complete": str(plan.days_to_complete),
        "next_run_on": plan.next_run_on.isoformat(), "script": plan.script, "buildings": plan.buildings,
        "is_active": plan.is_active,
    })


async def _parse_plan(request: Request):
    form = await request.form()
    raw = {k: v for k, v in form.multi_items() if k != "csrftoken"}
    p = forms.Parsed()
    v = p.values
    v["name"] = forms.text(raw, "name", p, required=True, max_length=120)
    v["interval_months"] = forms.integer(raw, "interval_months", p, low=1, high=24)
    v["days_to_complete"] = forms.integer(raw, "days_to_complete", p, low=1, high=365, default=30)
    v["script"] = forms.text(raw, "script", p, max_length=4000)
    v["is_active"] = bool(raw.get("is_active"))
    try:
        v["next_run_on"] = date.fromisoformat((raw.get("next_run_on") or "").strip())
    except ValueError:
        p.errors["next_run_on"] = gettext("Enter a date as YYYY-MM-DD.")
    allowed = {b.id for b in await Building.all()}
    v["buildings"] = forms.id_list(form.getlist("buildings"), allowed, "buildings", p)
    shown = {**raw, "is_active": v["is_active"], "buildings": form.getlist("buildings")}
    return p, shown


async def plan_create(request: Request) -> Response:
    parsed, shown = await _parse_plan(request)
    if parsed.errors:
        return await _plan_form(request, None, shown, parsed.errors, 422)
    plan = await VisitPlan.create(project_id=ctx(request).project.id, **parsed.values)
    return redirect(request, f"{base(request)}plans/{plan.id}", gettext("Plan saved."))


async def plan_update(request: Request) -> Response:
    plan: VisitPlan = request.state.record
    parsed, shown = await _parse_plan(request)
    if parsed.errors:
        return await _plan_form(request, plan, shown, parsed.errors, 422)
    await VisitPlan.filter(id=plan.id).update(**parsed.values)
    return redirect(request, f"{base(request)}plans/{plan.id}", gettext("Plan saved."))


async def plan_detail(request: Request) -> Response:
    plan: VisitPlan = request.state.record
    rounds = await VisitRound.filter(plan_id=plan.id).order_by("-starts_on").limit(24)
    progress = {}
    for visit_round in rounds:
        statuses = await Visit.filter(round_id=visit_round.id).values_list("status", flat=True)
        progress[visit_round.id] = {
            "done": sum(1 for s in statuses if s == VisitStatus.DONE),
            "unreachable": sum(1 for s in statuses if s == VisitStatus.UNREACHABLE),
            "open": sum(1 for s in statuses if s == VisitStatus.PENDING),
        }
    return await render(request, "activities/plan.html", {
        "plan": plan, "rounds": rounds, "progress": progress, "base": base(request), "can_manage": can(request, MANAGE),
        "today": timeutil.today(tz(request)),
    })


async def plan_generate(request: Request) -> Response:
    """Make the call list now instead of waiting for the plan's date."""
    plan: VisitPlan = request.state.record
    visit_round = await visits.generate_round(plan)
    if visit_round is None:
        return redirect(request, f"{base(request)}plans/{plan.id}",
                        gettext("Today's call list of this plan already exists."), "warning")
    return redirect(request, f"{base(request)}visits?round={visit_round.id}",
                    gettext("Call list made: %(count)s households.", count=visit_round.total))


# The call list ----------------------------------------------------------------------------


async def _agents(request: Request):
    return [(str(u.id), str(u)) for u in await visits.callers(ctx(request).project.id)]


async def _rounds(request: Request):
    rows = await VisitRound.all().select_related("plan").order_by("-starts_on").limit(50)
    return [(str(r.id), f"{r.plan.name} · {r.starts_on.isoformat()}") for r in rows]


CALLS = ListView(
    "activities-calls", _("Return-visit calls"), model=Visit,
    columns=[
        Column("unit", _("Unit"), field="unit.code", sort="unit__code", link=lambda v, r: f"{base(r)}visits/{v.id}"),
        Column("customer", _("Customer"), field="customer.name", sort="customer__name"),
        Column("agent", _("Caller"), value=lambda v: str(v.agent) if v.agent else ""),
        Column("status", _("Status"), format="choice", choices=VisitStatus.CHOICES, sort=True),
        Column("outcome", _("Outcome"), format="choice", choices={"": "", **VisitOutcome.CHOICES}),
        Column("said", _("What the customer said"), wrap=True),
        Column("due_on", _("Due"), field="round.due_on", format="date", sort="round__due_on"),
        Column("done_at", _("Called"), format="datetime", sort=True),
    ],
    filters=[
        Filter.choice("status", _("Status"), VisitStatus.CHOICES),
        Filter.choice("agent", _("Caller"), _agents, field="agent_id"),
        Filter.choice("round", _("Call list"), _rounds, field="round_id"),
        Filter.choice("outcome", _("Outcome"), VisitOutcome.CHOICES),
    ],
    search=["unit__code", "customer__name", "customer__name_pinyin", "said"],
    select_related=["unit", "customer", "agent", "round"],
    default_sort="unit",
)


async def call_list(request: Request) -> Response:
    me = ctx(request).principal.id
    actions = []
    if str(me) in dict(await CALLS.options(request, "agent")):  # the callers, read once for this and the filter
        actions = [(gettext("My calls to make"), f"{base(request)}visits?agent={me}&status={VisitStatus.PENDING}")]
    return await CALLS.response(request, actions=actions)


async def _visit_page(request: Request, visit: Visit, values=None, errors=None, status_code=200):
    await visit.fetch_related("unit", "customer", "agent", "round", "round__plan")
    customer = visit.customer
    if customer is None or visit.unit is None:  # a row naming another estate's household is not shown
        raise HTTPException(404)
    phones = await CustomerPhone.filter(customer_id=customer.id).values_list("number", flat=True)
    previous = await Visit.filter(customer_id=customer.id).exclude(id=visit.id).exclude(status=VisitStatus.PENDING).order_by(
        "-done_at").limit(5)
    modules = ctx(request).modules
    follow_ups = [(key, label) for key, label in FollowUp.CHOICES.items() if not key or FollowUp.MODULES[key] in modules]
    return await render(request, "activities/visit.html", {
        "visit": visit, "customer": customer, "phones": phones, "previous": previous, "base": base(request),
        "values": values or {"channel": customer.preferred_channel}, "errors": errors or {},
        "outcomes": list(VisitOutcome.CHOICES.items()), "channels": list(Channel.CHOICES.items()),
        "follow_ups": follow_ups, "status_labels": VisitStatus.CHOICES, "outcome_labels": VisitOutcome.CHOICES,
        "can_record": can(request, VISIT) and visit.status == VisitStatus.PENDING,
        **await timeline.context(request, customer),
    }, status_code=status_code)


async def visit_page(request: Request) -> Response:
    return await _visit_page(request, request.state.record)


async def visit_record(request: Request) -> Response:
    visit: Visit = request.state.record
    form = {k: v for k, v in (await request.form()).multi_items() if k != "csrftoken"}
    try:
        await visits.record_visit(
            visit, outcome=form.get("outcome", ""), said=form.get("said", ""), channel=form.get("channel", ""),
            follow_up=form.get("follow_up", ""), enabled=ctx(request).modules, by=ctx(request).principal,
        )
    except visits.VisitError as exc:
        await visit.refresh_from_db()
        return await _visit_page(request, visit, form, exc.errors, 422)
    following = await Visit.filter(round_id=visit.round_id, agent_id=ctx(request).principal.id,
                                   status=VisitStatus.PENDING).exclude(id=visit.id).order_by("id").first()
    target = f"{base(request)}visits/{following.id}" if following else f"{base(request)}visits?round={visit.round_id}"
    return redirect(request, target, gettext("Call recorded."))
