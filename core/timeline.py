"""Timeline (chatter): the history of any business record, with who and when.

Any record of a `ProjectScopedModel` (a work order, a complaint, a unit, a
customer) can have a history of notes, status changes, assignments, emails,
calls and attachments. Entries point at their record by *subject label*
("hotline.WorkOrder") and id, so no plugin needs a table or foreign key of
its own for it.

    from core.api import timeline

    async with transaction():
        order.status = "dispatched"
        await order.save()
        await timeline.post(order, "status", _("Dispatched to engineering"), author=ctx(request).principal,
                            data={"from": "new", "to": "dispatched"})

On a detail page, `await timeline.context(request, order)` gives what
`{% include "core/_timeline.html" %}` needs; the partial lists the entries
newest first and lets anyone who can see the record add a note.

Posted entries are never edited or deleted: there are no routes or API for
it. A correction is a new entry (a note saying what was wrong), so the
history always shows what people knew at the time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from tortoise import fields
from tortoise.exceptions import DoesNotExist
from tortoise.models import Model

from core.i18n import gettext, lazy_gettext as _
from core.models import Project
from core.scope import OutOfScope, ProjectScopedModel, unscoped

NOTE_MAX_LENGTH = 4000
KIND_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,31}$")

# Labels of the kinds core knows; plugins may post other kinds (shown as written).
KINDS = {
    "note": _("Note"),
    "status": _("Status change"),
    "assign": _("Assignment"),
    "email": _("Email"),
    "call": _("Call"),
    "attachment": _("Attachment"),
}


class TimelineEntry(ProjectScopedModel):
    """One entry of a record's history. Written once, never changed."""

    id = fields.BigIntField(primary_key=True)
    subject = fields.CharField(max_length=96)  # subject label, e.g. "hotline.WorkOrder"
    subject_id = fields.BigIntField()
    kind = fields.CharField(max_length=32)
    body = fields.TextField(default="")
    data = fields.JSONField(default=dict)
    # Empty for entries written by the system (jobs, webhooks). Users are
    # deactivated, never deleted, so the author of an entry stays known.
    author = fields.ForeignKeyField("core.User", related_name=False, null=True, on_delete=fields.RESTRICT)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "core_timeline_entry"
        indexes = (("subject", "subject_id"),)
        ordering = ["-id"]

    @property
    def kind_label(self) -> str:
        label = KINDS.get(self.kind)
        return str(label) if label is not None else self.kind


# Subjects ------------------------------------------------------------------


def subject_label(record: Model) -> str:
    """`"hotline.WorkOrder"` for a work order: how timeline and attachments name a record's model."""
    return f"{record._meta.app}.{type(record).__name__}"


def _check_subject(record: Model) -> None:
    if not isinstance(record, ProjectScopedModel) or record.pk is None:
        raise TypeError(f"a saved ProjectScopedModel record is needed, got {record!r}")


def _author_id(author: Any) -> int | None:
    """A `User`, the request's principal, or a user id; None for the system."""
    if author is None or isinstance(author, int):
        return author
    return author.id


async def load_subject(request: Request, label: str, record_id: int) -> ProjectScopedModel:
    """The record named by a URL, loaded within the user's scope; 404 if they cannot see it.

    The record's plugin must be enabled in the project, and when its model
    declares `view_permission = "plugin.perm"` the user needs that too.
    """
    from core.db import model_by_label
    from core.web import ctx

    context = ctx(request)
    if label.partition(".")[0] not in context.modules:
        raise HTTPException(404)
    try:
        model = model_by_label(label)
    except KeyError:
        raise HTTPException(404) from None
    if not (isinstance(model, type) and issubclass(model, ProjectScopedModel)):
        raise HTTPException(404)
    permission = getattr(model, "view_permission", None)
    if permission and not context.principal.can(permission, context.project.id):
        raise HTTPException(404)
    try:
        return await model.get(id=record_id)
    except (DoesNotExist, OutOfScope):
        raise HTTPException(404) from None


async def subject_base_url(request: Request, record: ProjectScopedModel) -> str:
    """`/p/<project code>/` of the record's project (the request's own project when it matches)."""
    from core.web import ctx

    project = ctx(request).project
    if project is None or project.id != record.project_id:
        with unscoped():
            project = await Project.get(id=record.project_id)
    return f"/p/{project.code}/"


def current_page(request: Request) -> str:
    """The page the user is on: for htmx requests the page that sent them, not the fragment URL."""
    current = request.headers.get("hx-current-url")
    if current:
        parts = urlsplit(current)
        return parts.path + (f"?{parts.query}" if parts.query else "")
    return request.url.path + (f"?{request.url.query}" if request.url.query else "")


def safe_next(request: Request, target: str | None) -> str:
    """Where a plain (non-htmx) form goes back to: a local page of this project only."""
    from core.web import project_url

    base = project_url(request)
    if target and target.startswith(base) and "//" not in target and "\\" not in target:
        return target
    return base


# API -------------------------------------------------------------------------


async def post(
    record: Model,
    kind: str,
    body: str = "",
    *,
    author: Any = None,
    data: dict[str, Any] | None = None,
) -> TimelineEntry:
    """Add an entry to `record`'s history; runs in the caller's transaction if there is one.

    kind: "note", "status", "assign", "email", "call", "attachment" or a
        plugin's own (lowercase letters, digits, `_`).
    author: a `User`, `ctx(request).principal` or a user id; None for the system.
    data: JSON-serialisable details, e.g. {"from": "new", "to": "dispatched"}.
    """
    _check_subject(record)
    if not KIND_PATTERN.match(kind or ""):
        raise ValueError(f"timeline kind must be lowercase letters, digits and _: {kind!r}")
    return await TimelineEntry.create(
        project_id=record.project_id,
        subject=subject_label(record),
        subject_id=record.pk,
        kind=kind,
        body=body or "",
        data=data or {},
        author_id=_author_id(author),
    )


async def history(record: Model) -> list[TimelineEntry]:
    """The record's entries, newest first, with their authors loaded."""
    _check_subject(record)
    return await (
        TimelineEntry.filter(subject=subject_label(record), subject_id=record.pk)
        .order_by("-id")
        .prefetch_related("author")
    )


@dataclass
class TimelineView:
    """What `core/_timeline.html` renders (as the variable `timeline`)."""

    record: Any
    entries: list[TimelineEntry]
    url: str
    files_url: str
    dom_id: str
    can_note: bool
    back: str
    note: str = ""
    errors: dict[str, str] = field(default_factory=dict)


async def context(request: Request, record: Model, *, note: str = "", errors: dict | None = None) -> dict[str, Any]:
    """`{"timeline": ...}` for a page that includes `core/_timeline.html`."""
    from core.web import ctx

    _check_subject(record)
    label = subject_label(record)
    base = await subject_base_url(request, record)
    principal = ctx(request).principal
    view = TimelineView(
        record=record,
        entries=await history(record),
        url=f"{base}timeline/{label}/{record.pk}",
        files_url=f"{base}files/",
        dom_id=f"timeline-{label.replace('.', '-')}-{record.pk}",
        can_note=principal is not None and principal.can("core.annotate", record.project_id),
        back=current_page(request),
        note=note,
        errors=errors or {},
    )
    return {"timeline": view}


# Views -----------------------------------------------------------------------


async def _render_partial(request: Request, record, *, status_code: int = 200, **kw) -> Response:
    from core.templating import render

    return await render(request, "core/_timeline.html", await context(request, record, **kw), status_code=status_code)


async def timeline_fragment(request: Request) -> Response:
    """The partial alone, for htmx refreshes (e.g. after an upload added an entry)."""
    record = await load_subject(request, request.path_params["label"], request.path_params["id"])
    return await _render_partial(request, record)


async def add_note(request: Request) -> Response:
    from core.db import transaction
    from core.web import ctx, form_data, redirect, toast

    record = await load_subject(request, request.path_params["label"], request.path_params["id"])
    form = await form_data(request)
    body = (form.get("body") or "").strip()
    error = None
    if not body:
        error = gettext("Write the note first.")
    elif len(body) > NOTE_MAX_LENGTH:
        error = gettext("A note can have at most %(max)s characters.", max=NOTE_MAX_LENGTH)
    if error:
        if not request.headers.get("hx-request"):
            return redirect(request, safe_next(request, form.get("next")), error, level="error")
        return await _render_partial(request, record, status_code=422, note=body, errors={"body": error})
    async with transaction():
        await post(record, "note", body, author=ctx(request).principal)
    if not request.headers.get("hx-request"):
        return redirect(request, safe_next(request, form.get("next")), gettext("Note added."))
    return toast(await _render_partial(request, record), gettext("Note added."))
