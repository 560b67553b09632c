"""Import pages: upload, preview with the error report, commit with a progress bar, template."""

from __future__ import annotations

import io
from urllib.parse import quote

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import Response

from core import importer
from core import settings as settings_module
from core.attachments import CHUNK, AttachmentError, clean_filename, save_stream
from core.i18n import gettext
from core.importer import ImportBatch, ImportState
from core.templating import render
from core.web import ctx, project_url, redirect

KINDS = {".xlsx": "xlsx", ".csv": "csv", ".txt": "csv"}
RECENT = 20


def _limit() -> int:
    return int(settings_module.current()["storage"]["max_upload_mb"]) * 1024 * 1024


async def _page(request: Request, *, error: str = "", status_code: int = 200) -> Response:
    batches = await ImportBatch.all().order_by("-id").limit(RECENT).prefetch_related("created_by")
    return await render(
        request,
        "core/import.html",
        {"batches": batches, "errors": {"file": error} if error else {}, "max_mb": _limit() // (1024 * 1024)},
        block="upload",
        status_code=status_code,
    )


async def import_page(request: Request) -> Response:
    return await _page(request)


async def import_upload(request: Request) -> Response:
    """Store the file, check every row, and show the preview or the error report."""
    limit = _limit()
    too_large = gettext("The file is larger than %(mb)s MB.", mb=limit // (1024 * 1024))
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit + CHUNK:
        return await _page(request, error=too_large, status_code=422)
    async with request.form(max_files=1, max_fields=10) as form:
        file = form.get("file")
        if not isinstance(file, UploadFile) or not file.filename:
            return await _page(request, error=gettext("Choose a file to upload."), status_code=422)
        filename = clean_filename(file.filename)
        suffix = "." + filename.rpartition(".")[2].lower() if "." in filename else ""
        kind = KINDS.get(suffix)
        if kind is None:
            message = (
                gettext("Old .xls workbooks cannot be read: save the file as .xlsx in Excel and upload it again.")
                if suffix == ".xls"
                else gettext("Upload an .xlsx workbook or a .csv file.")
            )
            return await _page(request, error=message, status_code=422)
        project = ctx(request).project
        stored = importer.new_upload_path(project.id, kind)
        try:
            await save_stream(file, stored, limit)
        except AttachmentError as exc:  # too large, or the disk is full
            stored.unlink(missing_ok=True)
            return await _page(request, error=str(exc), status_code=422)
        except BaseException:
            stored.unlink(missing_ok=True)
            raise
    batch = await importer.create_batch(project.id, filename, kind, stored, ctx(request).principal.id)
    return redirect(request, project_url(request, f"import/{batch.id}"))


async def _batch_context(batch: ImportBatch) -> dict:
    await batch.fetch_related("created_by")
    batch.done = importer.rows_done(batch)  # also while its transaction is open (SQLite keeps the count in memory)
    return {
        "batch": batch,
        "States": ImportState,
        "column_label": importer.column_label,
        "summary_labels": {
            "buildings_created": gettext("Buildings added"),
            "buildings_updated": gettext("Buildings updated"),
            "units_created": gettext("Units added"),
            "units_updated": gettext("Units updated"),
            "customers_created": gettext("Customers added"),
            "customers_updated": gettext("Customers updated"),
            "links_created": gettext("Customers linked to units"),
        },
    }


async def batch_page(request: Request) -> Response:
    return await render(request, "core/import_batch.html", await _batch_context(request.state.record))


async def batch_progress(request: Request) -> Response:
    """The status block alone; the page polls it every second while the import runs."""
    batch = await ImportBatch.get(id=request.state.record.id)
    return await render(request, "core/import_batch.html", await _batch_context(batch), block="status")


async def batch_commit(request: Request) -> Response:
    batch: ImportBatch = request.state.record
    page = project_url(request, f"import/{batch.id}")
    if batch.state == ImportState.DONE or (batch.state == ImportState.RUNNING and not batch.interrupted):
        return redirect(request, page)  # a second click while it runs, or after
    if not await importer.start_commit(batch):
        context = await _batch_context(batch)
        context["commit_error"] = gettext("This file cannot be imported: correct the errors and upload it again.")
        return await render(request, "core/import_batch.html", context, block="status", status_code=422)
    return redirect(request, page)


async def template_download(request: Request) -> Response:
    buffer = io.BytesIO()
    importer.template_workbook(buffer)
    name = quote(gettext("Import template") + ".xlsx", safe="")
    return Response(
        buffer.getvalue(),
        media_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        headers={"Content-Disposition": f"attachment; filename=\"courtyard-import.xlsx\"; filename*=UTF-8''{name}"},
    )
