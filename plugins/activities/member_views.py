"""The owners' club: members with number, level, join date and consent; levels and points per estate."""

from __future__ import annotations

from datetime import date

from starlette.requests import Request
from starlette.responses import Response
from tortoise.exceptions import IntegrityError

from core.api import (
    Column, Customer, Filter, ListView, Sequence, ctx, customer_search_q, gettext, lazy_gettext as _, redirect, render,
    timeline, transaction,
)
from plugins.activities import forms, timeutil
from plugins.activities.models import Club, Member, MemberLevel, MemberStatus
from plugins.activities.views import MANAGE, base, can, tz


async def club_of(project_id: int) -> Club:
    """The estate's club settings (defaults until a manager saves them)."""
    return await Club.get_or_none(project_id=project_id) or Club(project_id=project_id)


async def _levels(request: Request):
    return [(str(lv.id), lv.name) for lv in await MemberLevel.all()]


MEMBERS = ListView(
    "activities-members", _("Club members"), model=Member,
    columns=[
        Column("number", _("Member no."), sort=True, link=lambda m, r: f"{base(r)}members/{m.id}"),
        Column("customer", _("Name"), field="customer.name", sort="customer__name",
               link=lambda m, r: f"/p/{ctx(r).project.code}/customers/{m.customer_id}"),
        Column("level", _("Level"), value=lambda m: m.level.name if m.level else ""),
        Column("joined_on", _("Joined"), format="date", sort=True),
        Column("consent_to_contact", _("Agrees to be contacted"), format="boolean"),
        Column("points", _("Points"), format="number", sort=True),
        Column("status", _("Status"), format="choice", choices=MemberStatus.CHOICES, sort=True),
    ],
    filters=[
        Filter.choice("level", _("Level"), _levels, field="level_id"),
        Filter.choice("status", _("Status"), MemberStatus.CHOICES),
        Filter.boolean("consent_to_contact", _("Agrees to be contacted")),
    ],
    search=["number", "customer__name", "customer__name_pinyin", "customer__name_initials"],
    select_related=["customer", "level"],
    default_sort="number",
)


async def member_list(request: Request) -> Response:
    actions = []
    if can(request, MANAGE):
        actions = [(gettext("Add a member"), base(request) + "members/new"), (gettext("Levels and points"), base(request) + "club")]
    return await MEMBERS.response(request, actions=actions)


async def _member_form(request, member, values, errors=None, matches=None, status_code=200):
    return await render(request, "activities/member_form.html", {
        "member": member, "values": values, "errors": errors or {}, "matches": matches or [], "base": base(request),
        "levels": await _levels(request), "statuses": list(MemberStatus.CHOICES.items()),
        "club": await club_of(ctx(request).project.id), "can_manage": can(request, MANAGE),
    }, status_code=status_code)


async def member_new(request: Request) -> Response:
    return await _member_form(request, None, {"joined_on": timeutil.today(tz(request)).isoformat(), "consent": False})


async def member_matches(request: Request) -> Response:
    q = request.query_params.get("q", "").strip()
    matches = await Customer.filter(customer_search_q(q)).limit(10) if q else []
    return await render(request, "activities/_matches.html", {"matches": matches})


def _parse_common(raw: dict, levels: set[int], parsed: forms.Parsed) -> None:
    level = (raw.get("level") or "").strip()
    if level and (not level.isdigit() or int(level) not in levels):
        parsed.errors["level"] = gettext("Choose from the listed options.")
    parsed.values["level_id"] = int(level) if level and "level" not in parsed.errors else None
    try:
        parsed.values["joined_on"] = date.fromisoformat((raw.get("joined_on") or "").strip())
    except ValueError:
        parsed.errors["joined_on"] = gettext("Enter a date as YYYY-MM-DD.")
    parsed.values["consent_to_contact"] = bool(raw.get("consent"))


async def member_create(request: Request) -> Response:
    raw = {k: v for k, v in (await request.form()).multi_items() if k != "csrftoken"}
    parsed = forms.Parsed()
    customer = None
    if not (raw.get("customer") or "").isdigit() or (customer := await Customer.get_or_none(id=int(raw["customer"]))) is None:
        parsed.errors["customer"] = gettext("Search for the owner and pick them from the list.")
    elif await Member.exists(customer_id=customer.id):
        parsed.errors["customer"] = gettext("%(name)s is already a member.", name=customer.name)
    _parse_common(raw, {lv.id for lv in await MemberLevel.all()}, parsed)
    if parsed.errors:
        return await _member_form(request, None, raw, parsed.errors, [customer] if customer else [], 422)
    project_id = ctx(request).project.id
    now = timeutil.now()
    try:
        async with transaction():
            number = f"{await Sequence.take(project_id, 'activities.member'):06d}"
            member = await Member.create(
                project_id=project_id, customer_id=customer.id, number=number,
                consent_changed_at=now if parsed.values["consent_to_contact"] else None, **parsed.values,
            )
            await timeline.post(customer, "status", gettext("Joined the owners' club as member %(number)s.", number=number),
                                author=ctx(request).principal)
    except IntegrityError:  # the same owner added at the same moment by someone else
        errors = {"customer": gettext("%(name)s is already a member.", name=customer.name)}
        return await _member_form(request, None, raw, errors, [customer], 422)
    return redirect(request, f"{base(request)}members/{member.id}", gettext("Member %(number)s added.", number=number))


async def member_detail(request: Request) -> Response:
    member: Member = request.state.record
    await member.fetch_related("customer", "level")
    return await _member_form(request, member, {
        "level": member.level_id or "", "joined_on": member.joined_on.isoformat(), "consent": member.consent_to_contact,
        "status": member.status, "points": str(member.points),
    })


async def member_update(request: Request) -> Response:
    member: Member = request.state.record
    await member.fetch_related("customer", "level")
    raw = {k: v for k, v in (await request.form()).multi_items() if k != "csrftoken"}
    parsed = forms.Parsed()
    _parse_common(raw, {lv.id for lv in await MemberLevel.all()}, parsed)
    status = raw.get("status", member.status)
    if status not in MemberStatus.CHOICES:
        parsed.errors["status"] = gettext("Choose from the listed options.")
    points = forms.integer(raw, "points", parsed, low=0, high=10_000_000, default=member.points)
    if parsed.errors:
        return await _member_form(request, member, raw, parsed.errors, status_code=422)
    values = dict(parsed.values, status=status, points=points)
    if values["consent_to_contact"] != member.consent_to_contact:
        values["consent_changed_at"] = timeutil.now()
    if status == MemberStatus.LEFT and member.status != MemberStatus.LEFT:
        values["left_on"] = timeutil.today(tz(request))
    elif status == MemberStatus.ACTIVE:
        values["left_on"] = None
    async with transaction():
        await Member.filter(id=member.id).update(**values)
        if status != member.status:
            await timeline.post(member.customer, "status", gettext("Club membership: %(status)s.",
                                status=str(MemberStatus.CHOICES[status])), author=ctx(request).principal)
    return redirect(request, f"{base(request)}members/{member.id}", gettext("Member saved."))


# Levels and points -------------------------------------------------------------------------


async def _club_page(request, errors=None, values=None, status_code=200):
    return await render(request, "activities/club.html", {
        "club": await club_of(ctx(request).project.id), "levels": await MemberLevel.all(), "base": base(request),
        "errors": errors or {}, "values": values or {"rank": "0", "min_points": "0"},
    }, status_code=status_code)


async def club_page(request: Request) -> Response:
    return await _club_page(request)


async def club_save(request: Request) -> Response:
    raw = {k: v for k, v in (await request.form()).multi_items() if k != "csrftoken"}
    parsed = forms.Parsed()
    per = forms.integer(raw, "points_per_attendance", parsed, low=0, high=10_000, default=0)
    if parsed.errors:
        return await _club_page(request, parsed.errors, status_code=422)
    project_id = ctx(request).project.id
    enabled = bool(raw.get("points_enabled"))
    club, _created = await Club.get_or_create(project_id=project_id, defaults={"points_enabled": enabled,
                                                                                 "points_per_attendance": per})
    await Club.filter(id=club.id).update(points_enabled=enabled, points_per_attendance=per)
    return redirect(request, f"{base(request)}club", gettext("Club settings saved."))


async def level_add(request: Request) -> Response:
    raw = {k: v for k, v in (await request.form()).multi_items() if k != "csrftoken"}
    parsed = forms.Parsed()
    name = forms.text(raw, "name", parsed, required=True, max_length=64)
    rank = forms.integer(raw, "rank", parsed, low=0, high=1000, default=0)
    min_points = forms.integer(raw, "min_points", parsed, low=0, high=10_000_000, default=0)
    if not parsed.errors and await MemberLevel.exists(name=name):
        parsed.errors["name"] = gettext("A level with this name exists already.")
    if parsed.errors:
        return await _club_page(request, parsed.errors, raw, 422)
    try:
        await MemberLevel.create(project_id=ctx(request).project.id, name=name, rank=rank, min_points=min_points,
                                 description=forms.text(raw, "description", parsed, max_length=255))
    except IntegrityError:
        return await _club_page(request, {"name": gettext("A level with this name exists already.")}, raw, 422)
    return redirect(request, f"{base(request)}club", gettext("Level added."))
