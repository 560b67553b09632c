"""The nightly job: close the visits nobody marked as left, and tell the managers."""

from core.api import EmailError, JobContext, queue_email, users_with_permission
from courtyard_visitors.models import Visitor
from courtyard_visitors.views import local_day_bounds


async def close_open_visits(ctx: JobContext):
    project = ctx.project  # a per-project job: one run per estate with the module on
    at = ctx.now()
    start, end = local_day_bounds(project, ctx.slot)
    open_visits = await Visitor.filter(left_at__isnull=True, arrived_at__lte=at).select_related("unit")
    for visitor in open_visits:
        visitor.left_at = at
        visitor.closed_automatically = True
        await visitor.save(update_fields=["left_at", "closed_automatically"])
    total = await Visitor.filter(arrived_at__gte=start, arrived_at__lt=end).count()
    ctx.log(f"closed {len(open_visits)} open visit(s); {total} visitor(s) today")
    context = {
        "project_name": project.name,
        "project_code": project.code,
        "day": start.date().isoformat(),
        "total": total,
        "closed": [{"name": v.name, "unit": v.unit.code, "purpose": v.purpose} for v in open_visits],
    }
    for manager in await users_with_permission(project.id, "visitors.summary"):
        if not manager.email:
            continue
        try:
            await queue_email(
                to=manager.email, template="visitors/nightly_summary", context=context,
                locale=manager.locale, project_id=project.id, related=f"visitors.summary:{context['day']}",
            )
        except EmailError as exc:  # one colleague's malformed address must not stop the others' mail
            ctx.log(f"not sent to {manager.email}: {exc}")
