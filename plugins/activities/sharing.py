"""Group-wide activities: a host estate opens its activity to other estates.

Who may share: a manager who holds `activities.manage` both in the host
estate and in each estate invited (head office holds it everywhere), and
only with estates that have the activities module enabled. Inviting an
estate makes that estate's own row of the activity (`Activity.host_activity`
points at the host's row); withdrawing the invitation cancels that row, and
is refused while owners of that estate are signed up.

The host's decisions (title, place, times, seats, window, cost, family
members, status) are copied onto the invited rows whenever they change;
each estate sets its own audience (buildings, levels, members only) on its
own row, because buildings and levels belong to one estate. Seats and the
waitlist are shared (see `registration.py`).

This module crosses estates with `unscoped()` only for those rows and for
counts and estate names; registrations and customers of another estate are
never read for display here.
"""

from __future__ import annotations

from tortoise.expressions import F

from core.api import Project, current_host, enabled_modules, gettext as _, timeline, unscoped
from plugins.activities.models import Activity, ActivityStatus, Registration, RegistrationStatus

# What the host decides for every estate taking part.
SHARED_FIELDS = (
    "title", "description", "place", "starts_at", "ends_at", "capacity", "registration_opens_at",
    "registration_closes_at", "cost", "max_family",
)
ACTIVE = (RegistrationStatus.CONFIRMED, RegistrationStatus.WAITLISTED)


class SharingError(ValueError):
    pass


async def invitable_estates(principal, host_project_id: int) -> list[Project]:
    """Other active estates with the activities module where this user manages activities."""
    host = current_host()
    with unscoped():
        projects = await Project.filter(is_active=True).exclude(id=host_project_id).order_by("code")
    found = []
    for project in projects:
        if principal.can("activities.manage", project.id) and "activities" in await enabled_modules(project, host):
            found.append(project)
    return found


async def guest_rows(host: Activity) -> list[Activity]:
    """The invited estates' rows of a host activity (withdrawn ones too: they are cancelled)."""
    with unscoped():
        return await Activity.filter(host_activity_id=host.id).order_by("project_id")


def _shared_values(host: Activity) -> dict:
    return {name: getattr(host, name) for name in SHARED_FIELDS}


async def copy_to_guests(host: Activity) -> None:
    """Copy the host's decisions onto the invited rows (call in the transaction that changed the host)."""
    with unscoped():
        await Activity.filter(host_activity_id=host.id).update(seats_taken=host.seats_taken,
                                                               **_shared_values(host))


async def publish_guests(host: Activity) -> None:
    with unscoped():
        await Activity.filter(host_activity_id=host.id, status=ActivityStatus.DRAFT).update(
            status=ActivityStatus.PUBLISHED
        )


async def set_guests(host: Activity, wanted: set[int], manageable: set[int], *, by=None) -> tuple[list[str], list[str]]:
    """Invite the estates in `wanted` and withdraw the others among `manageable` (the estates the user may change).

    Call inside a transaction. Raises SharingError (the caller rolls back) when
    a withdrawn estate still has owners signed up. Returns the names of the
    estates invited and withdrawn.
    """
    author_id = getattr(by, "id", by)
    invited, withdrawn = [], []
    with unscoped():
        # Lock the host's row first: seats copied onto a new row must not change meanwhile.
        await Activity.filter(id=host.id).update(seats_taken=F("seats_taken"))
        await host.refresh_from_db()
        hosting = await Project.get(id=host.project_id)
        rows = {row.project_id: row for row in await Activity.filter(host_activity_id=host.id)}
        names = dict(await Project.filter(id__in=list(wanted | manageable)).values_list("id", "name"))
        for project_id in sorted(wanted - {host.project_id}):
            row = rows.get(project_id)
            if row is not None and row.status != ActivityStatus.CANCELLED:
                continue
            if row is None:
                row = await Activity.create(
                    project_id=project_id, host_activity_id=host.id, status=host.status, members_only=host.members_only,
                    created_by_id=author_id, seats_taken=host.seats_taken, **_shared_values(host),
                )
            else:
                await Activity.filter(id=row.id).update(status=host.status, seats_taken=host.seats_taken,
                                                        **_shared_values(host))
            await timeline.post(row, "status", _("%(estate)s opened this activity to the owners of this estate; "
                                                 "seats are shared.", estate=hosting.name), author=author_id)
            invited.append(names.get(project_id, ""))
        for project_id in sorted(manageable - wanted):
            row = rows.get(project_id)
            if row is None or row.status == ActivityStatus.CANCELLED:
                continue
            signed_up = await Registration.filter(activity_id=row.id, status__in=ACTIVE).count()
            if signed_up:
                raise SharingError(_(
                    "%(count)s owners of %(estate)s are signed up: cancel their sign-ups there before withdrawing "
                    "the invitation.", count=signed_up, estate=names.get(project_id, ""),
                ))
            await Activity.filter(id=row.id).update(status=ActivityStatus.CANCELLED)
            await timeline.post(row, "status", _("%(estate)s withdrew the invitation of this estate.",
                                                 estate=hosting.name), author=author_id)
            withdrawn.append(names.get(project_id, ""))
    return invited, withdrawn


async def summary(activity: Activity) -> dict | None:
    """What staff of one estate see of a shared activity: the estates and the overall counts.

    None for an activity of one estate only.
    """
    with unscoped():
        pool = activity if not activity.is_guest else await Activity.get(id=activity.pool_id)
        rows = await Activity.filter(host_activity_id=pool.id).exclude(status=ActivityStatus.CANCELLED).values_list(
            "id", "project_id")
        if not rows:
            if not activity.is_guest:
                return None
        ids = [pool.id] + [row_id for row_id, _project in rows]
        names = dict(await Project.filter(id__in=[pool.project_id] + [p for _id, p in rows]).values_list("id", "name"))
        waiting = await Registration.filter(activity_id__in=ids, status=RegistrationStatus.WAITLISTED).values_list(
            "id", "waitlisted_at")
        answered = await Registration.filter(activity_id__in=ids, rating__isnull=False).values_list("rating", flat=True)
    queue = [reg_id for reg_id, _at in sorted(waiting, key=lambda w: (w[1], w[0]))]
    return {
        "host": names.get(pool.project_id, ""),
        "guests": [names.get(p, "") for _id, p in rows],
        "is_host": not activity.is_guest,
        "seats_taken": pool.seats_taken,
        "capacity": pool.capacity,
        "waiting": len(queue),
        "queue_place": {reg_id: n for n, reg_id in enumerate(queue, 1)},
        "answers": len(answered),
        "average": round(sum(answered) / len(answered), 2) if answered else None,
    }
