"""The activities' JSON API: the owners' WeChat mini-program lists activities, signs owners up and cancels.

Registrations go through `registration.register` and `registration.cancel`,
exactly as the staff page and the invitation link do (seats taken by the
database, the waitlist, duplicates refused, timeline, domain events), so a
sign-up from the mini-program takes the same seats staff see.

Waitlist lengths and places count the one queue of a shared activity
(all estates taking part), as the staff page's overall counts do; only
counts cross estates, never another estate's people.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Literal

from pydantic import Field
from tortoise.expressions import Q

from core.api import (
    MAX_ID, ApiCall, ApiError, ApiModel, Customer, ListQuery, Page, api_route, gettext as _, now, paginate, unscoped,
)
from plugins.activities import registration as reg
from plugins.activities.models import Activity, ActivityStatus, Registration, RegistrationChannel, RegistrationStatus


ActivityStatusName = Literal[tuple(ActivityStatus.CHOICES)]  # type: ignore[valid-type]
RegistrationStatusName = Literal[tuple(RegistrationStatus.CHOICES)]  # type: ignore[valid-type]


class ActivityOut(ApiModel):
    id: int
    title: str
    description: str
    place: str
    starts_at: datetime
    ends_at: datetime
    capacity: int = Field(description="Seats in all (shared by every estate taking part, for a group-wide activity).")
    seats_taken: int = Field(description="Seats of confirmed registrations, family members included.")
    seats_left: int
    waitlist_length: int = Field(description="Registrations waiting for a seat (one queue over the estates taking part).")
    max_family: int = Field(description="Family members one registration may bring along.")
    cost: Decimal = Field(description="Per seat, as a decimal string; \"0.00\" when free.")
    members_only: bool
    registration_opens_at: datetime | None = Field(description="Null: open as soon as published.")
    registration_closes_at: datetime | None = Field(description="Null: open until the start.")
    registration_open: bool = Field(description="Whether a registration sent now can be accepted (published, in its window).")
    status: ActivityStatusName = Field(description="draft, published (open for registration) or cancelled.")
    host_activity_id: int | None = Field(description="Set when another estate hosts this group-wide activity.")
    updated_at: datetime | None
    web_path: str = Field(description="The activity's page in Courtyard, relative to the server.")


class ActivityQuery(ListQuery):
    status: ActivityStatusName | None = Field(None, description="Only activities in this state.")
    upcoming: bool | None = Field(None, description="true: only activities that have not started yet; false: only those that have.")


class RegistrationIn(ApiModel):
    """A sign-up, as staff or the owner's invitation link would make it."""

    activity_id: int = Field(ge=1, le=MAX_ID, description="An activity of the estate (GET /api/v1/projects/{project}/activities).")
    customer_id: int = Field(ge=1, le=MAX_ID, description="The owner who comes (GET /customers?phone=...).")
    family_count: int = Field(0, ge=0, le=100, description="Family members coming along (up to the activity's max_family); "
                                                           "they take a seat each.")


class RegistrationOut(ApiModel):
    id: int
    activity_id: int
    customer_id: int
    family_count: int
    seats: int = Field(description="1 + family_count.")
    status: str = Field(description="confirmed (holds seats), waitlisted or cancelled.")
    waitlist_position: int | None = Field(description="1 for the next to move up; null unless waitlisted.")
    channel: str = Field(description="staff, link (the invitation email) or api.")
    code: str = Field(description="Check-in code: show it as text or a QR code; the desk scans or types it.")
    created_at: datetime
    waitlisted_at: datetime | None
    confirmed_at: datetime | None
    cancelled_at: datetime | None
    checked_in_at: datetime | None
    rating: int | None = Field(description="The owner's feedback, 1 to 5 stars.")
    updated_at: datetime | None
    web_path: str = Field(description="The activity's page in Courtyard, relative to the server.")


class RegistrationQuery(ListQuery):
    activity_id: int | None = Field(None, ge=1, le=MAX_ID, description="Only sign-ups for this activity.")
    customer_id: int | None = Field(None, ge=1, le=MAX_ID, description="Only this customer's sign-ups.")
    status: RegistrationStatusName | None = Field(None, description="Only sign-ups in this state.")


async def _queues(pool_ids: set[int]) -> dict[int, list[int]]:
    """Waiting registration ids of each pool, first in line first (counted over every estate taking part)."""
    if not pool_ids:
        return {}
    with unscoped():
        rows = await Activity.filter(Q(id__in=list(pool_ids)) | Q(host_activity_id__in=list(pool_ids))).values_list(
            "id", "host_activity_id")
        pool_of = {row_id: host_id or row_id for row_id, host_id in rows}
        waiting = await Registration.filter(
            activity_id__in=list(pool_of), status=RegistrationStatus.WAITLISTED
        ).values_list("id", "activity_id", "waitlisted_at")
    queues: dict[int, list[tuple]] = {pool_id: [] for pool_id in pool_ids}
    for reg_id, activity_id, at in waiting:
        queues.setdefault(pool_of[activity_id], []).append((at, reg_id))
    return {pool_id: [reg_id for _at, reg_id in sorted(queue)] for pool_id, queue in queues.items()}


async def _activities_out(call: ApiCall, activities: list[Activity]) -> list[dict]:
    queues = await _queues({a.pool_id for a in activities})
    at = now()
    base = f"/p/{call.project.code}/activities/"
    return [
        {
            **{name: getattr(a, name) for name in (
                "id", "title", "description", "place", "starts_at", "ends_at", "capacity", "seats_taken", "seats_left",
                "max_family", "cost", "members_only", "registration_opens_at", "registration_closes_at", "status",
                "host_activity_id", "updated_at",
            )},
            "waitlist_length": len(queues.get(a.pool_id, [])),
            "registration_open": reg.window_problem(a, at) is None,
            "web_path": f"{base}{a.id}",
        }
        for a in activities
    ]


async def _registrations_out(call: ApiCall, registrations: list[Registration]) -> list[dict]:
    activities = {a.id: a for a in await Activity.filter(id__in=list({r.activity_id for r in registrations}))}
    waiting = [r for r in registrations if r.status == RegistrationStatus.WAITLISTED]
    queues = await _queues({activities[r.activity_id].pool_id for r in waiting})
    base = f"/p/{call.project.code}/activities/"
    out = []
    for r in registrations:
        position = None
        if r.status == RegistrationStatus.WAITLISTED:
            queue = queues.get(activities[r.activity_id].pool_id, [])
            position = queue.index(r.id) + 1 if r.id in queue else None
        out.append({
            **{name: getattr(r, name) for name in (
                "id", "activity_id", "customer_id", "family_count", "seats", "status", "channel", "code", "created_at",
                "waitlisted_at", "confirmed_at", "cancelled_at", "checked_in_at", "rating", "updated_at",
            )},
            "waitlist_position": position,
            "web_path": f"{base}{r.activity_id}",
        })
    return out


# Activities -------------------------------------------------------------------------


async def list_activities(call: ApiCall) -> dict:
    query: ActivityQuery = call.query
    activities = Activity.filter(**query.sent("status"))
    if query.upcoming is not None:
        activities = activities.filter(starts_at__gt=now()) if query.upcoming else activities.filter(starts_at__lte=now())
    return await paginate(call, activities, convert=lambda rows: _activities_out(call, rows))


async def get_activity(call: ApiCall) -> dict:
    return (await _activities_out(call, [call.record]))[0]


# Registrations ----------------------------------------------------------------------


async def list_registrations(call: ApiCall) -> dict:
    query: RegistrationQuery = call.query
    registrations = Registration.filter(**query.sent("activity_id", "customer_id", "status"))
    return await paginate(call, registrations, convert=lambda rows: _registrations_out(call, rows))


async def get_registration(call: ApiCall) -> dict:
    return (await _registrations_out(call, [call.record]))[0]


FIELDS = {"customer": "customer_id", "family_count": "family_count"}


async def create_registration(call: ApiCall) -> dict:
    body: RegistrationIn = call.body
    activity = await Activity.get_or_none(id=body.activity_id)
    customer = await Customer.get_or_none(id=body.customer_id)  # another estate's customer is not found here
    errors: dict[str, str] = {}
    if activity is None:
        errors["activity_id"] = _("There is no such activity in this estate.")
    else:
        problem = reg.window_problem(activity, now())
        if problem:
            errors["activity_id"] = problem
    if customer is None:
        errors["customer_id"] = _("There is no such customer in this estate.")
    if activity is not None and "activity_id" not in errors:
        try:
            family = reg.parse_family(body.family_count, activity)
        except reg.RegistrationError as exc:
            errors[FIELDS.get(exc.field, exc.field)] = exc.message
    if errors:
        raise ApiError.invalid(errors)
    try:
        registration = await reg.register(activity, customer, family, channel=RegistrationChannel.API)
    except reg.RegistrationError as exc:
        raise ApiError.invalid({FIELDS.get(exc.field, exc.field): exc.message}) from None
    return (await _registrations_out(call, [registration]))[0]


async def cancel_registration(call: ApiCall) -> dict:
    """Cancel; a registration already cancelled is answered as it is, so a retry is harmless."""
    registration: Registration = call.record
    activity = await Activity.get(id=registration.activity_id)
    if registration.status != RegistrationStatus.CANCELLED:
        if now() >= activity.starts_at:
            raise ApiError.invalid({"id": _("The activity has started: the sign-up can no longer be cancelled.")},
                                   location="path")
        await reg.cancel(registration, reason=_("(through the API: %(name)s)", name=call.token.name),
                         cancelled_by=reg.CancelledBy.API)
    registration = await Registration.get(id=registration.id)
    return (await _registrations_out(call, [registration]))[0]


def routes():
    read, write = "activities:read", "activities:write"
    activity, registration = "activities.Activity", "activities.Registration"
    sync = ("Keep the `updated_at` of the last item (or the cursor) and pass it as `updated_since` next time to get "
            "only what changed.")
    return [
        api_route("GET", "/", list_activities, scope=read, query=ActivityQuery, response=Page[ActivityOut],
                  summary="Activities, in order of change",
                  description=sync + " Seats and waitlist changes count as changes of the activity."),
        api_route("GET", "/{id:int}", get_activity, scope=read, response=ActivityOut, model=activity,
                  summary="An activity, with its seats and waitlist"),
        api_route("GET", "/registrations", list_registrations, scope=read, query=RegistrationQuery,
                  response=Page[RegistrationOut], summary="Registrations for activities, in order of change",
                  description=sync),
        api_route("GET", "/registrations/{id:int}", get_registration, scope=read, response=RegistrationOut,
                  model=registration, summary="A registration"),
        api_route("POST", "/registrations", create_registration, scope=write, body=RegistrationIn,
                  response=RegistrationOut, creates=True, summary="Register an owner for an activity",
                  description="A seat when enough are free, otherwise a place on the waitlist (`status` says which), "
                              "exactly as when staff register the owner. Refused (422, naming the field) when "
                              "registration is not open, the owner is not in the activity's audience or is already "
                              "signed up. Send an Idempotency-Key so a retry cannot register twice."),
        api_route("POST", "/registrations/{id:int}/cancel", cancel_registration, scope=write, response=RegistrationOut,
                  model=registration, summary="Cancel a registration",
                  description="Frees its seats, which go to the waitlist at once. Refused (422) once the activity has "
                              "started; a registration already cancelled is answered unchanged."),
    ]
