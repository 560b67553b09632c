"""Registration rules: seats, waitlist, promotion, cancellation and check-in.

Seats are counted in `Activity.seats_taken` and taken with one conditional
UPDATE (`... WHERE seats_taken + n <= capacity`): the database decides who
gets the last seat, on SQLite (writes are serialised) and on PostgreSQL (the
second UPDATE waits for the first transaction and re-checks its condition).
Everything a registration changes (seats, the row, the timeline, the email)
happens in one transaction, so a refusal or a failure leaves nothing behind.

Waitlist order is first come, first served. When seats free up, waiting
people are promoted in that order; someone whose party does not fit the free
seats keeps their place while the next, smaller party may be promoted.
"""

from __future__ import annotations

import secrets
from datetime import datetime

from tortoise.exceptions import IntegrityError
from tortoise.expressions import F

from core.api import (
    Customer, CustomerUnit, EmailError, Unit, gettext as _, queue_email, timeline, transaction,
)
from plugins.activities import timeutil
from plugins.activities.models import (
    Activity, ActivityStatus, Club, Member, MemberStatus, Registration, RegistrationChannel, RegistrationStatus,
)

CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O or 1/I: read aloud and typed on a tablet


class RegistrationError(ValueError):
    """A registration that cannot be made; `field` is where the form shows the message."""

    def __init__(self, message: str, field: str = "customer"):
        super().__init__(message)
        self.message = message
        self.field = field


def new_code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(8))


# Seats -----------------------------------------------------------------------------


async def take_seats(activity_id: int, seats: int) -> bool:
    """Take `seats` if they are free; False (and nothing changed) when they are not."""
    taken = await Activity.filter(id=activity_id, seats_taken__lte=F("capacity") - seats).update(
        seats_taken=F("seats_taken") + seats
    )
    return bool(taken)


async def release_seats(activity_id: int, seats: int) -> None:
    await Activity.filter(id=activity_id).update(seats_taken=F("seats_taken") - seats)


# Who may come -----------------------------------------------------------------------


async def audience_problem(activity: Activity, customer: Customer, on=None) -> str | None:
    """Why `customer` is not in the activity's audience, or None when they are."""
    levels = [int(x) for x in activity.audience_levels or []]
    if activity.members_only or levels:
        member = await Member.get_or_none(customer_id=customer.id, status=MemberStatus.ACTIVE)
        if member is None:
            return _("This activity is for club members only, and %(name)s is not a member.", name=customer.name)
        if levels and member.level_id not in levels:
            return _("This activity is for other membership levels.")
    buildings = [int(x) for x in activity.audience_buildings or []]
    if buildings:
        day = on or timeutil.today("UTC")
        unit_ids = [
            link.unit_id
            for link in await CustomerUnit.filter(customer_id=customer.id)
            if link.end_date is None or link.end_date >= day
        ]
        if not await Unit.filter(id__in=unit_ids, building_id__in=buildings).exists():
            return _("This activity is for residents of other buildings.")
    return None


def window_problem(activity: Activity, at: datetime) -> str | None:
    if activity.status == ActivityStatus.CANCELLED:
        return _("This activity has been cancelled.")
    if activity.status != ActivityStatus.PUBLISHED:
        return _("Registration has not opened yet.")
    if activity.registration_opens_at and at < activity.registration_opens_at:
        return _("Registration has not opened yet.")
    if at >= (activity.registration_closes_at or activity.starts_at):
        return _("Registration has closed.")
    return None


def parse_family(raw: str | int, activity: Activity) -> int:
    try:
        family = int(str(raw).strip() or 0)
    except ValueError:
        raise RegistrationError(_("Enter a whole number."), "family_count") from None
    if family < 0 or family > activity.max_family:
        raise RegistrationError(
            _("Between 0 and %(max)s family members can come along.", max=activity.max_family), "family_count"
        )
    return family


# Registering ----------------------------------------------------------------------------


async def register(
    activity: Activity,
    customer: Customer,
    family_count: int,
    *,
    channel: str = RegistrationChannel.STAFF,
    by=None,
    at: datetime | None = None,
) -> Registration:
    """Register `customer` with `family_count` family members: a seat if one is free, else the waitlist.

    Raises RegistrationError (nothing changed) when the window is closed, the
    person is not in the audience or already registered.
    """
    at = at or timeutil.now()
    problem = window_problem(activity, at) or await audience_problem(activity, customer)
    if problem:
        raise RegistrationError(problem)
    seats = 1 + family_count
    author_id = getattr(by, "id", by)
    try:
        async with transaction():
            previous = await Registration.get_or_none(activity_id=activity.id, customer_id=customer.id)
            if previous is not None and previous.status != RegistrationStatus.CANCELLED:
                raise _already(previous)
            confirmed = await take_seats(activity.id, seats)
            status = RegistrationStatus.CONFIRMED if confirmed else RegistrationStatus.WAITLISTED
            values = dict(
                family_count=family_count, seats=seats, status=status, channel=channel, registered_by_id=author_id,
                confirmed_at=at if confirmed else None, waitlisted_at=None if confirmed else at, cancelled_at=None,
                checked_in_at=None, checked_in_by_id=None, reminded_at=None,
            )
            if previous is None:
                registration = await Registration.create(
                    project_id=activity.project_id, activity_id=activity.id, customer_id=customer.id, code=new_code(),
                    **values,
                )
            else:
                # Signing up again after cancelling: the same row, only if nobody else revived it meanwhile.
                revived = await Registration.filter(id=previous.id, status=RegistrationStatus.CANCELLED).update(**values)
                if not revived:
                    raise _already(previous)
                registration = await Registration.get(id=previous.id)
            if confirmed:
                body = _("%(name)s registered (%(seats)s seats).", name=customer.name, seats=seats)
            else:
                body = _("%(name)s joined the waitlist (%(seats)s seats).", name=customer.name, seats=seats)
            await timeline.post(activity, "registration", body, author=author_id,
                                data={"registration": registration.id, "status": status})
            if channel == RegistrationChannel.LINK:
                await _email(registration, customer, activity, "registered")
    except IntegrityError:
        # The same person registered at the same moment elsewhere: theirs stands, this one changed nothing.
        raise RegistrationError(_("%(name)s is already registered for this activity.", name=customer.name)) from None
    registration.activity = activity
    registration.customer = customer
    return registration


def _already(previous: Registration) -> RegistrationError:
    if previous.status == RegistrationStatus.WAITLISTED:
        return RegistrationError(_("This person is already on the waitlist for this activity."))
    return RegistrationError(_("This person is already registered for this activity."))


async def cancel(registration: Registration, *, by=None, at: datetime | None = None, reason: str = "") -> bool:
    """Cancel a sign-up; freed seats go to the waitlist at once. False if it was already cancelled."""
    at = at or timeutil.now()
    author_id = getattr(by, "id", by)
    async with transaction():
        was = registration.status
        changed = await Registration.filter(id=registration.id, status=was).exclude(
            status=RegistrationStatus.CANCELLED
        ).update(status=RegistrationStatus.CANCELLED, cancelled_at=at)
        if not changed:
            return False
        activity = await Activity.get(id=registration.activity_id)
        customer = await Customer.get(id=registration.customer_id)
        body = _("%(name)s cancelled.", name=customer.name) + (f" {reason}" if reason else "")
        await timeline.post(activity, "registration", body, author=author_id,
                            data={"registration": registration.id, "status": RegistrationStatus.CANCELLED})
        if was == RegistrationStatus.CONFIRMED:
            await release_seats(activity.id, registration.seats)
            await promote_waiting(activity, at=at)
    registration.status = RegistrationStatus.CANCELLED
    registration.cancelled_at = at
    return True


async def promote_waiting(activity: Activity, *, at: datetime | None = None) -> list[Registration]:
    """Give free seats to waiting people, first come first served; each promoted person is emailed.

    Call inside the transaction that freed the seats (a cancellation, a bigger capacity).
    """
    at = at or timeutil.now()
    promoted = []
    waiting = await Registration.filter(activity_id=activity.id, status=RegistrationStatus.WAITLISTED).order_by(
        "waitlisted_at", "id"
    )
    for registration in waiting:
        await activity.refresh_from_db(fields=["seats_taken", "capacity"])
        if activity.seats_left <= 0:
            break
        if registration.seats > activity.seats_left:
            continue
        # Claim the person first (a concurrent promotion waits on this row), then the seats.
        claimed = await Registration.filter(id=registration.id, status=RegistrationStatus.WAITLISTED).update(
            status=RegistrationStatus.CONFIRMED, confirmed_at=at
        )
        if not claimed:
            continue
        if not await take_seats(activity.id, registration.seats):
            await Registration.filter(id=registration.id).update(status=RegistrationStatus.WAITLISTED, confirmed_at=None)
            continue
        customer = await Customer.get(id=registration.customer_id)
        registration.status, registration.confirmed_at = RegistrationStatus.CONFIRMED, at
        await timeline.post(
            activity, "registration", _("%(name)s moved up from the waitlist.", name=customer.name),
            data={"registration": registration.id, "status": RegistrationStatus.CONFIRMED},
        )
        await _email(registration, customer, activity, "promoted")
        promoted.append(registration)
    return promoted


async def _email(registration: Registration, customer: Customer, activity: Activity, template: str) -> None:
    """Tell the person, when they have an email address (a bad address must not block the change)."""
    if not customer.email:
        return
    from plugins.activities.tokens import email_context

    try:
        await queue_email(
            to=customer.email, template=f"activities/{template}",
            context=await email_context(registration, customer, activity), locale=customer.locale,
            project_id=activity.project_id, related=f"activities.Registration:{registration.id}",
        )
    except EmailError:
        pass


# Check-in ----------------------------------------------------------------------------------


async def check_in(registration: Registration, *, by=None, at: datetime | None = None) -> bool:
    """Record attendance once; False when the person was already checked in or holds no seat."""
    at = at or timeutil.now()
    author_id = getattr(by, "id", by)
    async with transaction():
        done = await Registration.filter(
            id=registration.id, status=RegistrationStatus.CONFIRMED, checked_in_at=None
        ).update(checked_in_at=at, checked_in_by_id=author_id)
        if not done:
            return False
        club = await Club.get_or_none(project_id=registration.project_id)
        if club is not None and club.points_enabled and club.points_per_attendance:
            await Member.filter(customer_id=registration.customer_id, status=MemberStatus.ACTIVE).update(
                points=F("points") + club.points_per_attendance
            )
    registration.checked_in_at, registration.checked_in_by_id = at, author_id
    return True
