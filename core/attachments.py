"""Attachments: photos of defects, signed handover forms, receipts, PDFs on any record.

Files hang off a record the same way timeline entries do (subject label +
id). They are stored on disk under `[storage] path` as
`<project id>/<yyyy>/<mm>/<random name>`, never under the name the user
gave; the type is detected from the bytes (the browser's claim is ignored)
and must be one of `[storage] allowed_types`, the size at most
`[storage] max_upload_mb`. Every upload adds an "attachment" entry to the
record's timeline.

    from core.api import attachments

    photo = await attachments.attach(defect, upload, upload.filename, author=ctx(request).principal)
    files = await attachments.list_for(defect)

On a detail page, `await attachments.context(request, record)` gives what
`{% include "core/_attachments.html" %}` needs (list and upload form).
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import re
import unicodedata
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from tortoise import fields
from tortoise.models import Model

from core import clock
from core import settings as settings_module
from core import timeline
from core.i18n import gettext
from core.scope import ProjectScopedModel

log = logging.getLogger("courtyard.attachments")

CHUNK = 64 * 1024
INLINE_TYPES = {"image/jpeg", "image/png", "image/webp"}
TYPE_NAMES = {"image/jpeg": "JPEG", "image/png": "PNG", "image/webp": "WebP", "image/gif": "GIF", "application/pdf": "PDF"}


class AttachmentError(ValueError):
    """An upload that was refused; the message is for the user."""


class StorageError(AttachmentError):
    """The file could not be written (disk full, storage unmounted); nothing of it was kept.

    Not the user's fault: a caller may keep the record it was for and say the file is missing.
    """


class Attachment(ProjectScopedModel):
    id = fields.BigIntField(primary_key=True)
    subject = fields.CharField(max_length=96)  # subject label, e.g. "handover.Defect"
    subject_id = fields.BigIntField()
    filename = fields.CharField(max_length=255)  # as uploaded, for display and download only
    content_type = fields.CharField(max_length=64)  # detected from the bytes
    size = fields.BigIntField()
    sha256 = fields.CharField(max_length=64)
    storage_path = fields.CharField(max_length=255)  # relative to [storage] path
    uploaded_by = fields.ForeignKeyField("core.User", related_name=False, null=True, on_delete=fields.RESTRICT)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "core_attachment"
        indexes = (("subject", "subject_id"),)
        ordering = ["-id"]

    @property
    def is_image(self) -> bool:
        return self.content_type in INLINE_TYPES

    @property
    def type_name(self) -> str:
        return TYPE_NAMES.get(self.content_type, self.content_type)


# Content -------------------------------------------------------------------


def detect_type(head: bytes) -> str | None:
    """The content type from a file's first bytes (magic numbers), or None if unknown."""
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if head.startswith(b"%PDF-"):
        return "application/pdf"
    return None


def clean_filename(name: str | None) -> str:
    """The user's file name without folders, control characters or quotes, at most 200 characters."""
    text = unicodedata.normalize("NFC", name or "")
    text = re.split(r"[\\/]", text)[-1]
    text = "".join(ch for ch in text if unicodedata.category(ch)[0] != "C" and ch not in '"<>|*?:').strip(" .")
    if len(text) > 200:
        stem, dot, ext = text.rpartition(".")
        text = (stem[: 200 - len(ext) - 1] + "." + ext) if dot and len(ext) <= 10 else text[:200]
    return text or "file"


def _limits() -> tuple[int, list[str]]:
    storage = settings_module.current()["storage"]
    return int(storage["max_upload_mb"]) * 1024 * 1024, list(storage["allowed_types"])


def allowed_names(allowed: list[str]) -> str:
    return ", ".join(TYPE_NAMES.get(t, t) for t in allowed)


async def _chunks(source: Any):
    if isinstance(source, (bytes, bytearray, memoryview)):
        view = memoryview(source)
        for start in range(0, len(view), CHUNK):
            yield bytes(view[start : start + CHUNK])
        return
    read = source.read
    while True:
        chunk = read(CHUNK)
        if hasattr(chunk, "__await__"):
            chunk = await chunk
        if not chunk:
            return
        yield chunk


async def save_stream(source: Any, target: Path, limit: int) -> tuple[int, str, bytes]:
    """Copy the upload to `target`, hashing it; stops as soon as it exceeds `limit`.

    Raises AttachmentError (too large) or StorageError (the disk is full or not
    writable); the caller removes what was written of `target`.
    """
    digest = hashlib.sha256()
    size = 0
    head = b""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "xb") as out:
            async for chunk in _chunks(source):
                size += len(chunk)
                if size > limit:
                    raise AttachmentError(
                        gettext("The file is larger than %(mb)s MB.", mb=limit // (1024 * 1024))
                    )
                if len(head) < 16:
                    head += chunk[: 16 - len(head)]
                digest.update(chunk)
                out.write(chunk)
    except OSError as exc:
        log.error("cannot write %s: %s", target, exc)
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise StorageError(gettext(
                "The file could not be stored: the server's disk is full. Nothing of it was kept; "
                "tell your IT administrator."
            )) from exc
        raise StorageError(gettext(
            "The file could not be stored on the server. Nothing of it was kept; tell your IT administrator."
        )) from exc
    return size, digest.hexdigest(), head


# API -------------------------------------------------------------------------


async def attach(record: Model, upload: Any, filename: str | None = None, *, author: Any) -> Attachment:
    """Store a file on `record` and note it in the record's timeline.

    upload: bytes, a Starlette `UploadFile` or a binary file object.
    filename: the name the user gave (kept for display; default: the upload's).
    author: a `User`, `ctx(request).principal`, a user id, or None for the system.
    Raises AttachmentError (message for the user) if the file is too large,
    empty or of a type not allowed, and its subclass StorageError when the
    disk is full; nothing is stored then.

    The file is written before the database rows; if the caller's own
    transaction rolls back later, the file stays on disk without a row
    (harmless, never served).
    """
    from core.db import transaction

    timeline._check_subject(record)
    limit, allowed = _limits()
    name = clean_filename(filename if filename is not None else getattr(upload, "filename", None))
    root = settings_module.current().storage_path
    now = clock.now()
    relative = Path(str(record.project_id), f"{now:%Y}", f"{now:%m}", uuid.uuid4().hex)
    target = root / relative
    try:
        size, sha256, head = await save_stream(upload, target, limit)
        if size == 0:
            raise AttachmentError(gettext("The file is empty."))
        content_type = detect_type(head)
        if content_type is None or content_type not in allowed:
            raise AttachmentError(
                gettext("This type of file is not accepted. Allowed: %(types)s.", types=allowed_names(allowed))
            )
        async with transaction():
            attachment = await Attachment.create(
                project_id=record.project_id,
                subject=timeline.subject_label(record),
                subject_id=record.pk,
                filename=name,
                content_type=content_type,
                size=size,
                sha256=sha256,
                storage_path=relative.as_posix(),
                uploaded_by_id=timeline._author_id(author),
            )
            await timeline.post(
                record, "attachment", name, author=author,
                data={"attachment_id": attachment.id, "content_type": content_type, "size": size},
            )
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    return attachment


async def list_for(record: Model) -> list[Attachment]:
    """The record's attachments, newest first, with who uploaded them."""
    timeline._check_subject(record)
    return await (
        Attachment.filter(subject=timeline.subject_label(record), subject_id=record.pk)
        .order_by("-id")
        .prefetch_related("uploaded_by")
    )


@dataclass
class AttachmentsView:
    """What `core/_attachments.html` renders (as the variable `attachments`)."""

    items: list[Attachment]
    upload_url: str
    files_url: str
    dom_id: str
    back: str
    max_mb: int
    accept: str
    allowed: str
    errors: dict[str, str] = field(default_factory=dict)
    can_upload: bool = True


async def context(request: Request, record: Model, *, errors: dict | None = None) -> dict[str, Any]:
    """`{"attachments": ...}` for a page that includes `core/_attachments.html`."""
    from core.web import ctx

    timeline._check_subject(record)
    limit, allowed = _limits()
    label = timeline.subject_label(record)
    base = await timeline.subject_base_url(request, record)
    view = AttachmentsView(
        items=await list_for(record),
        upload_url=f"{base}files/{label}/{record.pk}",
        files_url=f"{base}files/",
        dom_id=f"attachments-{label.replace('.', '-')}-{record.pk}",
        back=timeline.current_page(request),
        max_mb=limit // (1024 * 1024),
        accept=",".join(allowed),
        allowed=allowed_names(allowed),
        errors=errors or {},
        can_upload=ctx(request).principal is not None and ctx(request).principal.can("core.annotate", record.project_id),
    )
    return {"attachments": view}


# Views -----------------------------------------------------------------------


async def _render_partial(request: Request, record, *, status_code: int = 200, errors=None) -> Response:
    from core.templating import render

    return await render(
        request, "core/_attachments.html", await context(request, record, errors=errors), status_code=status_code
    )


async def upload(request: Request) -> Response:
    from core.web import ctx, redirect, toast

    record = await timeline.load_subject(request, request.path_params["label"], request.path_params["id"])
    htmx = bool(request.headers.get("hx-request"))
    back = timeline.safe_next(request, request.query_params.get("next"))
    limit, _ = _limits()

    async def refused(message: str) -> Response:
        if not htmx:
            return redirect(request, back, message, level="error")
        return await _render_partial(request, record, status_code=422, errors={"file": message})

    # Refuse an obviously oversized body before reading it (the multipart overhead is small).
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit + CHUNK:
        return await refused(gettext("The file is larger than %(mb)s MB.", mb=limit // (1024 * 1024)))
    async with request.form(max_files=1, max_fields=10) as form:
        file = form.get("file")
        if not isinstance(file, UploadFile) or not file.filename:
            return await refused(gettext("Choose a file to upload."))
        try:
            attachment = await attach(record, file, file.filename, author=ctx(request).principal)
        except AttachmentError as exc:
            return await refused(str(exc))
    message = gettext("%(name)s uploaded.", name=attachment.filename)
    if not htmx:
        return redirect(request, back, message)
    response = toast(await _render_partial(request, record), message)
    # Also tell the record's timeline (if shown) to reload: it has a new entry.
    triggers = json.loads(response.headers["HX-Trigger"])
    triggers["timelineChanged"] = True
    response.headers["HX-Trigger"] = json.dumps(triggers, ensure_ascii=True)
    return response


def _disposition(kind: str, filename: str) -> str:
    fallback = "".join(ch if 32 <= ord(ch) < 127 and ch not in '"\\;' else "_" for ch in filename)
    return f"{kind}; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


async def download(request: Request) -> Response:
    """Serve a file with its detected type: images inline, everything else as a download."""
    attachment: Attachment = request.state.record
    # The record it belongs to must be visible too (its module enabled, its permission held).
    await timeline.load_subject(request, attachment.subject, attachment.subject_id)
    path = settings_module.current().storage_path / attachment.storage_path
    if not path.is_file():
        log.error("attachment %s is missing on disk at %s", attachment.id, path)
        raise HTTPException(404)
    kind = "inline" if attachment.content_type in INLINE_TYPES else "attachment"
    return FileResponse(
        path,
        media_type=attachment.content_type,
        headers={
            "Content-Disposition": _disposition(kind, attachment.filename),
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; sandbox",
            "Cache-Control": "private, max-age=3600",
        },
    )
