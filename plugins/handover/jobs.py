"""Scheduled work of the handover module: appointment reminders, overdue keys, defect deadlines.

Each job runs per estate, in the estate's scope and one transaction, and
marks what it has sent (reminded_at, overdue_alerted_at, reminded_on,
escalation_level), so a retried or caught-up run never sends twice.
"""

from __future__ import annotations

from datetime import timedelta

from tortoise.expressions import Q

from core.api import (
    Customer, EmailError, JobContext, User, queue_email, timeline, users_with_permission,
)
from plugins.handover import services
from plugins.handover.models import (
    Appointment, AppointmentState, Contractor, ContractorContact, Defect, DefectState, KeyCheckout,
)

# Days past the deadline after which an overdue defect is escalated a second time.
SECOND_ESCALATION_DAYS = 7


async def _send(to: str, template: str, context: dict, project, related: str, locale: str = "zh_CN") -> bool:
    if not to:
        return False
    try:
        await queue_email(to=to, template=f"handover/{template}", locale=locale, project_id=project.id, related=related,
                          context={"project": project, "tz": project.timezone, **context})
    except EmailError:  # one malformed address must not stop the others' mail
        return False
    return True


async def appointment_reminders(ctx: JobContext) -> None:
    """The day before: remind every owner with an appointment tomorrow (local date of the estate)."""
    project = ctx.project
    tomorrow = services.local_today(project, ctx.now()) + timedelta(days=1)
    due = await Appointment.filter(state=AppointmentState.BOOKED, slot__day=tomorrow, reminded_at__isnull=True).prefetch_related(
        "slot", "handover__unit", "handover__owner"
    )
    sent = 0
    for appointment in due:
        owner = appointment.handover.owner
        if owner is not None and await _send(
            owner.email, "appointment_reminder",
            {"owner": owner, "unit": appointment.handover.unit, "slot": appointment.slot,
             "manage_url": services.booking_path(appointment.handover, ctx.now())},
            project, f"handover.Appointment:{appointment.id}", owner.locale,
        ):
            sent += 1
        await Appointment.filter(id=appointment.id).update(reminded_at=ctx.now())
    ctx.log(f"{sent} reminders for {tomorrow.isoformat()} sent, {len(due)} appointments")


async def _holder_email(checkout: KeyCheckout) -> tuple[str, str]:
    if checkout.holder_user_id:
        user = await User.get(id=checkout.holder_user_id)
        return user.email, user.locale
    if checkout.holder_customer_id:
        customer = await Customer.get(id=checkout.holder_customer_id)
        return customer.email, customer.locale
    contractor = await Contractor.get(id=checkout.holder_contractor_id)
    return contractor.email, "zh_CN"


async def overdue_keys(ctx: JobContext) -> None:
    """Keys not back by their due time: alert the custodian, the staff member who issued them and the managers."""
    project = ctx.project
    at = ctx.now()
    late = await KeyCheckout.filter(open_for__isnull=False, due_at__lt=at, overdue_alerted_at__isnull=True).prefetch_related(
        "keyset", "keyset__unit", "issued_by"
    )
    if not late:
        return
    managers = await users_with_permission(project.id, "handover.manage")
    for checkout in late:
        context = {"checkout": checkout, "keyset": checkout.keyset, "unit": checkout.keyset.unit,
                   "hours": int((at - checkout.due_at).total_seconds() // 3600)}
        related = f"handover.KeyCheckout:{checkout.id}"
        email, locale = await _holder_email(checkout)
        await _send(email, "keys_overdue_holder", context, project, related, locale)
        staff = {u.id: u for u in [checkout.issued_by, *managers]}
        for user in staff.values():
            await _send(user.email, "keys_overdue_staff", context, project, related, user.locale)
        await KeyCheckout.filter(id=checkout.id).update(overdue_alerted_at=at)
        await timeline.post(checkout.keyset, "overdue", f"{checkout.holder_name} · {checkout.purpose}",
                            data={"checkout_id": checkout.id, "due_at": checkout.due_at.isoformat()})
    ctx.log(f"{len(late)} overdue key checkouts alerted")


async def _contractor_addresses(contractor_id: int) -> list[str]:
    contractor = await Contractor.get(id=contractor_id)
    contacts = await ContractorContact.filter(contractor_id=contractor_id).exclude(email="").values_list("email", flat=True)
    return list(dict.fromkeys([a for a in [contractor.email, *contacts] if a]))


async def defect_deadlines(ctx: JobContext) -> None:
    """Remind contractors of repairs due today or tomorrow; escalate defects past their deadline to the managers."""
    project = ctx.project
    today = services.local_today(project, ctx.now())
    open_defects = Defect.filter(state__in=DefectState.UNRESOLVED)
    due_soon = await open_defects.filter(
        deadline__gte=today, deadline__lte=today + timedelta(days=1), contractor_id__isnull=False
    ).filter(Q(reminded_on__isnull=True) | Q(reminded_on__lt=today)).prefetch_related("unit", "contractor")
    for defect in due_soon:
        for address in await _contractor_addresses(defect.contractor_id):
            await _send(address, "defect_due", {"defect": defect, "unit": defect.unit}, project, f"handover.Defect:{defect.id}")
        await Defect.filter(id=defect.id).update(reminded_on=today)

    managers = await users_with_permission(project.id, "handover.manage")
    escalated = 0
    for defect in await open_defects.filter(deadline__lt=today).prefetch_related("unit", "contractor"):
        days = (today - defect.deadline).days
        level = 2 if days >= SECOND_ESCALATION_DAYS else 1
        if defect.escalation_level >= level:
            continue
        context = {"defect": defect, "unit": defect.unit, "days": days, "level": level}
        related = f"handover.Defect:{defect.id}"
        for user in managers:
            await _send(user.email, "defect_escalated", context, project, related, user.locale)
        if defect.contractor_id:
            for address in await _contractor_addresses(defect.contractor_id):
                await _send(address, "defect_overdue", context, project, related)
        await Defect.filter(id=defect.id).update(escalation_level=level)
        await timeline.post(defect, "escalation", f"{days} · {level}", data={"level": level, "days_overdue": days})
        escalated += 1
    ctx.log(f"{len(due_soon)} deadline reminders, {escalated} escalations")
