"""Signed links sent to owners: invitation (register once), ticket (QR code, cancel), feedback survey (once).

Links are made with `core.api.links`; the facts they carry are ids only, so
a link reveals nothing and a tampered one fails its signature.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from core.api import links
from plugins.activities import timeutil
from plugins.activities.models import Activity, Registration

INVITE = "activities.invite"
TICKET = "activities.ticket"
FEEDBACK = "activities.feedback"

FEEDBACK_VALID = timedelta(days=30)
MIN_VALID = timedelta(hours=1)


def _until(at: datetime, now: datetime) -> timedelta:
    return max(at - now, MIN_VALID)


def invite_token(activity: Activity, customer_id: int, now: datetime | None = None) -> str:
    """Lets one owner register once, until registration closes."""
    now = now or timeutil.now()
    closes = activity.registration_closes_at or activity.starts_at
    return links.make(INVITE, {"a": activity.id, "c": customer_id}, expires_in=_until(closes, now), now=now)


def ticket_token(registration: Registration, activity: Activity, now: datetime | None = None) -> str:
    """The owner's ticket page (code, QR code, cancel): valid until the day after the activity."""
    now = now or timeutil.now()
    return links.make(TICKET, {"r": registration.id}, expires_in=_until(activity.ends_at + timedelta(days=1), now), now=now)


def feedback_token(registration: Registration, now: datetime | None = None) -> str:
    now = now or timeutil.now()
    return links.make(FEEDBACK, {"r": registration.id}, expires_in=FEEDBACK_VALID, now=now)


def base_url() -> str:
    from core.settings import current

    return current()["server"]["base_url"].rstrip("/")


def ticket_url(registration: Registration, activity: Activity) -> str:
    return f"{base_url()}/activities/ticket/{ticket_token(registration, activity)}"


def invite_url(activity: Activity, customer_id: int) -> str:
    return f"{base_url()}/activities/join/{invite_token(activity, customer_id)}"


def feedback_url(registration: Registration) -> str:
    return f"{base_url()}/activities/feedback/{feedback_token(registration)}"


async def email_context(registration: Registration, customer, activity: Activity) -> dict:
    """What every email about a registration shows: the activity, the code and the ticket link."""
    from core.api import Project
    from core.api import unscoped

    with unscoped():
        project = await Project.get(id=activity.project_id)
    return {
        "name": customer.name,
        "estate": project.name,
        "title": activity.title,
        "place": activity.place,
        "starts_at": activity.starts_at,
        "tz": project.timezone,
        "cost": activity.cost,
        "seats": registration.seats,
        "code": registration.code,
        "waitlisted": registration.status == "waitlisted",
        "ticket_url": ticket_url(registration, activity),
    }
