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

An activity shared by several estates (see `models.py`) counts its seats on
the host's row, the pool: seats are taken and released there and mirrored
onto the invited estates' rows, and the waitlist is one queue over all of
them. That bookkeeping crosses estates on purpose (`unscoped()`), after the
caller reached the registration through its own estate's row; it only ever
touches the rows linked to that pool, and everything shown to staff is read
within their estate's scope again.

Domain events (documented in `domain_event`, core/hookspecs.py):
`activities.registration_confirmed` when a person gets a seat (at once, or
moved up from the waitlist) and `activities.registration_cancelled` when a
sign-up ends (by staff, by the owner's ticket link, or because the activity
was cancelled), each sent in the registration's own estate.
"""

from __future__ import annotations

import secrets
from datetime import datetime

from tortoise.exceptions import IntegrityError
from tortoise.expressions import F, Q

from core.api import (
    Customer, CustomerUnit, EmailError, Unit, emit, gettext as _, queue_email, timeline, transaction, unscoped,
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


def linked(pool_id: int):
    """The pool's row and the rows of the estates it invited (call within `unscoped()`)."""
    return Activity.filter(Q(id=pool_id) | Q(host_activity_id=pool_id))


async def _mirror(pool_id: int) -> None:
    # Runs after the pool's row changed in this transaction, so its lock orders concurrent mirrors.
    pool = await Activity.get(id=pool_id).only("id", "seats_taken", "capacity")
    await Activity.filter(host_activity_id=pool_id).update(seats_taken=pool.seats_taken, capacity=pool.capacity)


async def touch(pool_id: int) -> None:
    """Mark the pool's rows changed (their waitlist length did) for integrations' `updated_since` syncs."""
    with unscoped():
        await linked(pool_id).update()


async def take_seats(pool_id: int, seats: int) -> bool:
    """Take `seats` of the pool if they are free; False (and nothing changed) when they are not."""
    with unscoped():
        taken = await Activity.filter(id=pool_id, seats_taken__lte=F("capacity") - seats).update(
            seats_taken=F("seats_taken") + seats
        )
        if taken:
            await _mirror(pool_id)
    return bool(taken)


async def release_seats(pool_id: int, seats: int) -> None:
    with unscoped():
        await Activity.filter(id=pool_id).update(seats_taken=F("seats_taken") - seats)
        await _mirror(pool_id)


async def _announce(name: str, registration: Registration, activity: Activity, *, actor=None, **data) -> None:
    """Send a registration's domain event in its own estate."""
    await emit(
        name, registration.project_id, actor_id=getattr(actor, "id", actor),
        registration_id=registration.id, activity_id=activity.id, host_activity_id=activity.pool_id,
        customer_id=registration.customer_id, family_count=registration.family_count, seats=registration.seats,
        source=registration.channel, **data,
    )


async def announce_confirmed(registration: Registration, activity: Activity, *, promoted: bool, actor=None) -> None:
    await _announce("activities.registration_confirmed", registration, activity, actor=actor, promoted=promoted,
                    confirmed_at=registration.confirmed_at.isoformat())


async def announce_cancelled(registration: Registration, activity: Activity, *, previous: str, cancelled_by: str,
                             actor=None) -> None:
    await _announce("activities.registration_cancelled", registration, activity, actor=actor,
                    previous_status=previous, cancelled_by=cancelled_by,
                    cancelled_at=registration.cancelled_at.isoformat())


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
    if customer.project_id != activity.project_id:
        # Owners of an invited estate register through their own estate's row of the activity.
        raise RegistrationError(_("%(name)s belongs to another estate.", name=customer.name))
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
            confirmed = await take_seats(activity.pool_id, seats)
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
                revived = await Registration.filter(id=previous.id, status=RegistrationStatus.CANCELLED).update(
                    **values
                )
                if not revived:
                    raise _already(previous)
                registration = await Registration.get(id=previous.id)
            if confirmed:
                body = _("%(name)s registered (%(seats)s seats).", name=customer.name, seats=seats)
            else:
                body = _("%(name)s joined the waitlist (%(seats)s seats).", name=customer.name, seats=seats)
                await touch(activity.pool_id)
            await timeline.post(activity, "registration", body, author=author_id,
                                data={"registration": registration.id, "status": status})
            if channel == RegistrationChannel.LINK:
                await _email(registration, customer, activity, "registered")
            if confirmed:
                await announce_confirmed(registration, activity, promoted=False, actor=author_id)
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


class CancelledBy:
    STAFF = "staff"
    OWNER = "owner"  # from the ticket link
    ACTIVITY = "activity_cancelled"
    API = "api"  # another system through the JSON API, e.g. the owners' mini-program


async def cancel(registration: Registration, *, by=None, at: datetime | None = None, reason: str = "",
                 cancelled_by: str = CancelledBy.STAFF) -> bool:
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
        registration.status, registration.cancelled_at = RegistrationStatus.CANCELLED, at
        activity = await Activity.get(id=registration.activity_id)
        customer = await Customer.get(id=registration.customer_id)
        body = _("%(name)s cancelled.", name=customer.name) + (f" {reason}" if reason else "")
        await timeline.post(activity, "registration", body, author=author_id,
                            data={"registration": registration.id, "status": RegistrationStatus.CANCELLED})
        await announce_cancelled(registration, activity, previous=was, cancelled_by=cancelled_by, actor=author_id)
        if was == RegistrationStatus.CONFIRMED:
            await release_seats(activity.pool_id, registration.seats)
            await promote_waiting(activity, at=at)
        else:
            await touch(activity.pool_id)
    return True


async def promote_waiting(activity: Activity, *, at: datetime | None = None) -> list[Registration]:
    """Give free seats to waiting people, first come first served; each promoted person is emailed.

    For a shared activity the queue holds the waiting people of every estate
    taking part. Call inside the transaction that freed the seats (a
    cancellation, a bigger capacity).
    """
    at = at or timeutil.now()
    promoted = []
    with unscoped():
        rows = {a.id: a for a in await linked(activity.pool_id)}
        pool = rows[activity.pool_id]
        waiting = await Registration.filter(
            activity_id__in=list(rows), status=RegistrationStatus.WAITLISTED
        ).order_by("waitlisted_at", "id")
        for registration in waiting:
            await pool.refresh_from_db(fields=["seats_taken", "capacity"])
            if pool.seats_left <= 0:
                break
            if registration.seats > pool.seats_left:
                continue
            # Claim the person first (a concurrent promotion waits on this row), then the seats.
            claimed = await Registration.filter(id=registration.id, status=RegistrationStatus.WAITLISTED).update(
                status=RegistrationStatus.CONFIRMED, confirmed_at=at
            )
            if not claimed:
                continue
            if not await take_seats(pool.id, registration.seats):
                await Registration.filter(id=registration.id).update(
                    status=RegistrationStatus.WAITLISTED, confirmed_at=None
                )
                continue
            own = rows[registration.activity_id]  # the person's own estate's row
            customer = await Customer.get(id=registration.customer_id)
            registration.status, registration.confirmed_at = RegistrationStatus.CONFIRMED, at
            await timeline.post(
                own, "registration", _("%(name)s moved up from the waitlist.", name=customer.name),
                data={"registration": registration.id, "status": RegistrationStatus.CONFIRMED},
            )
            await _email(registration, customer, own, "promoted")
            await announce_confirmed(registration, own, promoted=True)
            promoted.append(registration)
    return promoted


async def cancel_activity(activity: Activity, *, by=None, at: datetime | None = None) -> int | None:
    """Cancel an activity (with every estate it invited): each sign-up ends and each person is told.

    Reminders and surveys stop, since jobs only look at published activities.
    Returns how many people were told, or None when the activity was already
    cancelled (nothing changed).
    """
    at = at or timeutil.now()
    author_id = getattr(by, "id", by)
    told = 0
    async with transaction():
        if not await Activity.filter(id=activity.id).exclude(status=ActivityStatus.CANCELLED).update(
            status=ActivityStatus.CANCELLED
        ):
            return None
        with unscoped():
            rows = {a.id: a for a in await linked(activity.id)}
            await linked(activity.id).exclude(status=ActivityStatus.CANCELLED).update(
                status=ActivityStatus.CANCELLED
            )
            active = await Registration.filter(
                activity_id__in=list(rows),
                status__in=[RegistrationStatus.CONFIRMED, RegistrationStatus.WAITLISTED],
            ).select_related("customer").order_by("id")
            per_row: dict[int, int] = {}
            for registration in active:
                was = registration.status
                if not await Registration.filter(id=registration.id, status=was).update(
                    status=RegistrationStatus.CANCELLED, cancelled_at=at
                ):
                    continue
                registration.status, registration.cancelled_at = RegistrationStatus.CANCELLED, at
                own = rows[registration.activity_id]
                if await _email(registration, registration.customer, own, "cancelled", waitlisted=was == "waitlisted"):
                    told += 1
                    per_row[own.id] = per_row.get(own.id, 0) + 1
                await announce_cancelled(registration, own, previous=was, cancelled_by=CancelledBy.ACTIVITY,
                                         actor=author_id)
            await linked(activity.id).update(seats_taken=0)
            for own in rows.values():
                await timeline.post(
                    own, "status",
                    _("Activity cancelled; %(count)s registered and waiting people were told by email.",
                      count=per_row.get(own.id, 0)),
                    author=author_id if own.id == activity.id else None,
                    data={"to": ActivityStatus.CANCELLED, "told": per_row.get(own.id, 0)},
                )
    return told


async def _email(registration: Registration, customer: Customer, activity: Activity, template: str,
                 **extra) -> bool:
    """Tell the person, in their language, when they have an email address (a bad address must not block
    the change). True when a message was queued."""
    if not customer.email:
        return False
    from plugins.activities.tokens import email_context

    try:
        await queue_email(
            to=customer.email, template=f"activities/{template}",
            context={**await email_context(registration, customer, activity), **extra}, locale=customer.locale,
            project_id=activity.project_id, related=f"activities.Registration:{registration.id}",
        )
    except EmailError:
        return False
    return True


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
