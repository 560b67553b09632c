"""Pass-through amounts (water, power charged at cost): entered per unit and month, or imported.

An amount is for one unit, pass-through item and bill month; the bill run of
that month puts it on the unit's bill. Entering it again replaces it until the
month is billed: then the unit's bill is issued and the amount can no longer
change (a correction goes on a later month). Re-importing the same file
changes nothing.

An import file has one row per unit: 房号/unit code and 金额/amount, and
optionally 费用项目/item (code or name), 月份/month and 备注/note; the item and
month chosen on the upload form apply where the file has none. Every row is
checked first (the error report names row and column); the rows are kept and
written only when someone confirms, all in one transaction or none.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Iterable, Iterator

from tortoise.exceptions import IntegrityError

from core.api import (
    SpreadsheetError, Unit, gettext as _, header_key, lazy_gettext, read_spreadsheet, timeline, transaction,
)
from plugins.fees.models import Basis, Bill, BillRun, FeeItem, MeterCharge, MeterImport, MeterImportState
from plugins.fees.money import InputError, ZERO, format_amount, parse_amount, period_label, utcnow

MAX_ERRORS = 500
PREVIEW_ROWS = 10
MAX_FILE_MB = 20
KINDS = {".xlsx": "xlsx", ".csv": "csv", ".txt": "csv"}

COLUMNS = {
    "unit": (lazy_gettext("Unit code"), ("房号", "房间号", "房屋编号", "房屋编码", "单元房号", "unit", "unitcode", "room")),
    "amount": (lazy_gettext("Amount"), ("金额", "费用", "应收金额", "本期金额", "应收", "amount")),
    "item": (lazy_gettext("Fee item"), ("费用项目", "收费项目", "项目", "项目编码", "费项", "item", "feeitem", "code")),
    "period": (lazy_gettext("Month"), ("月份", "账期", "计费月份", "所属月份", "period", "month")),
    "note": (lazy_gettext("Note"), ("备注", "读数", "说明", "note", "remark", "reading")),
}
TEMPLATE_HEADERS = ("房号", "费用项目", "月份", "金额", "备注")
_ALIASES = {header_key(alias): name for name, (_label, aliases) in COLUMNS.items() for alias in aliases}
_MONTH = re.compile(r"^\s*(\d{4})\s*(?:[-/.年]\s*(\d{1,2})|(\d{2}))\s*(?:月)?(?:[-/.]\d{1,2}.*|T.*|\s.*)?$")


def column_label(name: str) -> str:
    return str(COLUMNS[name][0]) if name in COLUMNS else ""


def parse_month(text: str) -> date | None:
    """"2026-05", "2026/5", "2026年5月", "202605" or a date in the month; None when it is none of these."""
    found = _MONTH.match(text or "")
    if not found:
        return None
    month = int(found.group(2) or found.group(3))
    return date(int(found.group(1)), month, 1) if 1 <= month <= 12 else None


# Checking ------------------------------------------------------------------------


@dataclass
class Checked:
    """The outcome of checking rows: what would be written, and what is wrong."""

    rows: list[list] = field(default_factory=list)  # [row, unit id, item id, period iso, amount, note, change]
    errors: list[dict] = field(default_factory=list)
    error_count: int = 0
    preview: list[list[str]] = field(default_factory=list)
    summary: dict[str, int] = field(default_factory=lambda: {"created": 0, "updated": 0, "unchanged": 0})
    amount: Decimal = ZERO

    def error(self, row: int | None, column: str, message: str) -> None:
        self.error_count += 1
        if len(self.errors) < MAX_ERRORS:
            self.errors.append({"row": row, "column": column_label(column), "message": message})


class Checker:
    """Checks rows of one estate against its units, pass-through items, amounts already entered and bills issued."""

    def __init__(self, project_id: int):
        self.project_id = project_id
        self.units: dict[str, int] = {}
        self.items: dict[str, FeeItem] = {}
        self.by_id: dict[int, FeeItem] = {}
        self.entered: dict[tuple[int, date], dict[int, tuple[Decimal, str]]] = {}  # (item, month) -> unit -> (amount, note)
        self.billed: dict[date, dict[int, str]] = {}  # month -> unit -> bill number
        self.seen: dict[tuple[int, int, date], int] = {}
        self.result = Checked()

    async def load(self) -> "Checker":
        # One estate's unit codes (ids and codes only) so each row costs no query.
        self.units = dict(await Unit.filter(project_id=self.project_id).values_list("code", "id"))
        for item in await FeeItem.filter(project_id=self.project_id):
            self.by_id[item.id] = item
            self.items[header_key(item.code)] = item
            self.items.setdefault(header_key(item.name), item)
        return self

    async def _month_facts(self, item_id: int, period: date) -> tuple[dict, dict[int, str]]:
        if (item_id, period) not in self.entered:
            self.entered[(item_id, period)] = {
                unit_id: (Decimal(amount), note) for unit_id, amount, note in await MeterCharge.filter(
                    project_id=self.project_id, item_id=item_id, period=period
                ).values_list("unit_id", "amount", "note")
            }
        if period not in self.billed:
            self.billed[period] = dict(await Bill.filter(project_id=self.project_id, period=period).values_list(
                "unit_id", "number"
            ))
        return self.entered[(item_id, period)], self.billed[period]

    async def check(self, number: int | None, unit_code: str, item: FeeItem | str | None, period: date | str | None,
                    amount_text: str, note: str) -> None:
        """Check one row; a good row is added to the result (as a create, an update or unchanged)."""
        result = self.result
        before = result.error_count
        code = (unit_code or "").strip()
        unit_id = self.units.get(code)
        if not code:
            result.error(number, "unit", _("Enter the unit code."))
        elif unit_id is None:
            result.error(number, "unit", _("Unknown unit %(code)s: it is not in this estate.", code=code))
        if isinstance(item, str):
            found = self.items.get(header_key(item)) if item.strip() else None
            if found is None:
                result.error(number, "item", _("Unknown fee item %(item)s.", item=item) if item.strip()
                             else _("Choose the fee item, or give it in a column of the file."))
            item = found
        elif item is None:
            result.error(number, "item", _("Choose the fee item, or give it in a column of the file."))
        if item is not None and item.basis != Basis.METERED:
            result.error(number, "item", _("%(item)s is not a pass-through item: its amounts come from its rates.",
                                           item=item.name))
            item = None
        if isinstance(period, str):
            text, period = period, parse_month(period)
            if period is None:
                result.error(number, "period", _("Enter the month as YYYY-MM, not %(value)s.", value=text) if text.strip()
                             else _("Choose the month, or give it in a column of the file."))
        elif period is None:
            result.error(number, "period", _("Choose the month, or give it in a column of the file."))
        try:
            amount = parse_amount(amount_text, allow_zero=True)
        except InputError as exc:
            result.error(number, "amount", exc.errors["amount"])
            amount = None
        note = (note or "").strip()
        if len(note) > 255:
            result.error(number, "note", _("At most 255 characters."))
        if result.error_count > before or unit_id is None or item is None or period is None or amount is None:
            return
        key = (unit_id, item.id, period)
        if key in self.seen:
            result.error(number, "unit", _("Unit %(code)s has another amount for %(item)s in %(month)s in row %(row)s.",
                                           code=code, item=item.name, month=period_label(period), row=self.seen[key]))
            return
        self.seen[key] = number or 0
        entered, billed = await self._month_facts(item.id, period)
        previous = entered.get(unit_id)
        if previous is not None and previous[0] == amount:
            change = "unchanged" if previous[1] == note else "updated"  # a new note alone bills nothing different
        elif unit_id in billed:
            result.error(number, "amount", _(
                "The %(month)s bill of unit %(code)s (%(bill)s) is already issued: this amount can no longer be "
                "billed for that month. Enter it for a later month.",
                month=period_label(period), code=code, bill=billed[unit_id]))
            return
        else:
            change = "created" if previous is None else "updated"
        result.summary[change] += 1
        result.amount += amount
        result.rows.append([number, unit_id, item.id, period.isoformat(), str(amount), note, change])
        if len(result.preview) < PREVIEW_ROWS:
            result.preview.append([code, item.name, period_label(period), str(amount), note, change])


# Files ---------------------------------------------------------------------------------


def file_kind(filename: str) -> str:
    suffix = os.path.splitext(filename or "")[1].lower()
    if suffix == ".xls":
        raise InputError({"file": _("Old .xls workbooks cannot be read: save the file as .xlsx and upload it again.")})
    if suffix not in KINDS:
        raise InputError({"file": _("Upload an .xlsx workbook or a .csv file.")})
    return KINDS[suffix]


def _mapping(cells: list[str]) -> dict[str, int]:
    mapping: dict[str, int] = {}
    for index, header in enumerate(cells):
        name = _ALIASES.get(header_key(header)) if header else None
        if name and name not in mapping:
            mapping[name] = index
    if "unit" not in mapping or "amount" not in mapping:
        raise SpreadsheetError(_(
            "The first row must name the columns: 房号 / unit code and 金额 / amount (optional: 费用项目 / item, "
            "月份 / month, 备注 / note). Download the template to see them."))
    return mapping


def file_rows(path: Path, kind: str) -> Iterator[tuple[int, dict[str, str]]]:
    """(row number, {column: text}) for each non-empty row below the header. Raises SpreadsheetError."""
    mapping = None
    rows = read_spreadsheet(path, kind)
    try:
        for number, cells in rows:
            if mapping is None:
                if any(cells):
                    mapping = _mapping(cells)
                continue
            values = {name: (cells[i].strip() if i < len(cells) else "") for name, i in mapping.items()}
            if any(values.values()):
                yield number, values
    finally:
        rows.close()
    if mapping is None:
        raise SpreadsheetError(_("The file is empty."))


async def check_upload(project_id: int, upload, item: FeeItem | None, period: date | None, *, user_id: int,
                       now: datetime | None = None) -> MeterImport:
    """Read and check an uploaded file (Starlette UploadFile); the result is kept as a MeterImport."""
    filename = os.path.basename(upload.filename or "")[:255] or "file"
    kind = file_kind(filename)
    with tempfile.TemporaryDirectory(prefix="courtyard-fees-") as folder:
        path = Path(folder) / f"upload.{kind}"
        size = 0
        with open(path, "wb") as out:
            while chunk := await upload.read(1024 * 1024):
                size += len(chunk)
                if size > MAX_FILE_MB * 1024 * 1024:
                    raise InputError({"file": _("The file is larger than %(mb)s MB.", mb=MAX_FILE_MB)})
                out.write(chunk)
        checker = await Checker(project_id).load()
        total = 0
        try:
            for number, values in file_rows(path, kind):
                total += 1
                await checker.check(
                    number, values.get("unit", ""), values["item"] if values.get("item") else item,
                    values["period"] if values.get("period") else period, values.get("amount", ""), values.get("note", ""),
                )
            if total == 0:
                raise SpreadsheetError(_("The file has column names but no rows below them."))
        except SpreadsheetError as exc:
            checker.result.error(None, "", str(exc))
    result = checker.result
    return await MeterImport.create(
        project_id=project_id, filename=filename,
        state=MeterImportState.INVALID if result.error_count else MeterImportState.READY,
        rows=[] if result.error_count else result.rows, total=total, amount=result.amount, errors=result.errors,
        error_count=result.error_count, preview=result.preview, summary=result.summary, created_by_id=user_id,
        created_at=now or utcnow(),
    )


# Writing --------------------------------------------------------------------------------


async def _write(project_id: int, rows: Iterable[list], *, user_id: int, now: datetime) -> None:
    """Rows as checked in this transaction: new ones in bulk, changed ones one by one, unchanged ones not at all."""
    new = []
    for _row, unit_id, item_id, period, amount, note, change in rows:
        period, amount = date.fromisoformat(period), Decimal(amount)
        if change == "created":
            new.append(MeterCharge(project_id=project_id, unit_id=unit_id, item_id=item_id, period=period,
                                   amount=amount, note=note, created_by_id=user_id))
        elif change == "updated":
            await MeterCharge.filter(unit_id=unit_id, item_id=item_id, period=period).update(
                amount=amount, note=note, updated_by_id=user_id, updated_at=now
            )
    if new:
        await MeterCharge.bulk_create(new, batch_size=1000)


async def commit_import(batch: MeterImport, *, user_id: int, now: datetime | None = None) -> MeterImport:
    """Write a checked import, all rows in one transaction or none.

    The rows are checked again first (a bill run may have billed a month since
    the upload): any error now leaves everything as it was and is reported.
    """
    now = now or utcnow()
    async with transaction():
        batch = await MeterImport.filter(id=batch.id).select_for_update().get()
        if batch.state != MeterImportState.READY:
            raise InputError({"form": _("This file was already imported, or has errors.")})
        await lock_months(batch.project_id, {row[3] for row in batch.rows})
        checker = await Checker(batch.project_id).load()
        by_id = {unit_id: code for code, unit_id in checker.units.items()}
        for number, unit_id, item_id, period, amount, note, _change in batch.rows:
            await checker.check(number, by_id.get(unit_id, ""), checker.by_id.get(item_id), date.fromisoformat(period),
                                 amount, note)
        result = checker.result
        if result.error_count:
            raise ImportChanged(result)
        try:
            async with transaction():
                await _write(batch.project_id, result.rows, user_id=user_id, now=now)
        except IntegrityError:
            raise InputError({"form": _("Someone entered amounts for the same units at the same time; import again.")}) from None
        await MeterImport.filter(id=batch.id).update(
            state=MeterImportState.DONE, summary=result.summary, imported_at=now, rows=[]
        )
    await batch.refresh_from_db()
    return batch


async def lock_months(project_id: int, periods: Iterable[str]) -> None:
    """Wait for a bill run working on these months to commit its chunk, and hold it off until we commit.

    The bill run locks its run row first in each chunk, so a chunk bills either
    before amounts written here (which then see its bills) or after them.
    """
    months = sorted({date.fromisoformat(p) if isinstance(p, str) else p for p in periods})
    if months:
        await BillRun.filter(project_id=project_id, period__in=months).order_by("id").select_for_update()


class ImportChanged(Exception):
    """Rows that were fine at upload are not any more; `result.errors` says which."""

    def __init__(self, result: Checked):
        super().__init__(f"{result.error_count} errors")
        self.result = result


async def enter_amount(unit_code: str, item: FeeItem | None, period_text: str, amount_text: str, note: str, *,
                       project_id: int, user_id: int, now: datetime | None = None) -> MeterCharge:
    """One amount typed on the page: the same checks as a file's row, messages by field."""
    month = parse_month(period_text)
    async with transaction():
        await lock_months(project_id, [month] if month else [])
        checker = await Checker(project_id).load()
        await checker.check(None, unit_code, item, period_text, amount_text, note)
        result = checker.result
        if result.error_count:
            errors: dict[str, str] = {}
            names = {column_label(name): name for name in COLUMNS}
            for error in result.errors:
                errors.setdefault(names.get(error["column"], "amount"), error["message"])
            raise InputError(errors)
        _row, unit_id, item_id, period, _amount, _note, _change = result.rows[0]
        await _write(project_id, result.rows, user_id=user_id, now=now or utcnow())
        charge = await MeterCharge.get(unit_id=unit_id, item_id=item_id, period=date.fromisoformat(period))
        unit = await Unit.get(id=unit_id)
        await timeline.post(unit, "fees_metered", _("%(item)s for %(month)s: %(amount)s entered.",
                                                   item=checker.by_id[item_id].name,
                                                   month=period_label(charge.period), amount=format_amount(charge.amount)),
                            author=user_id, data={"meter_charge": charge.id, "amount": str(charge.amount)})
    return charge


def template_workbook(target) -> None:
    """The import template: the columns, an example row and a sheet explaining them."""
    import openpyxl
    from openpyxl.styles import Font

    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.title = _("Amounts")
    sheet.append(list(TEMPLATE_HEADERS))
    for cell in sheet[1]:
        cell.font = Font(bold=True)
        sheet.column_dimensions[cell.column_letter].width = 16
        cell.number_format = "@"
    sheet.column_dimensions["A"].number_format = "@"
    sheet.column_dimensions["C"].number_format = "@"
    sheet.append(["1-1-101", "WATER", "2026-05", "36.40", "本月读数 1532"])
    notes = workbook.create_sheet(_("Help"))
    notes.append([_("Column"), _("Also accepted"), _("Notes")])
    explained = {
        "unit": _("The unit's code in this estate, e.g. 3-2-1502."),
        "item": _("The code or name of a pass-through fee item; empty: the item chosen on the upload page."),
        "period": _("The bill month, e.g. 2026-05; empty: the month chosen on the upload page."),
        "amount": _("Yuan with at most 2 decimals; 0 is allowed."),
        "note": _("Optional, e.g. the meter reading."),
    }
    for name in ("unit", "item", "period", "amount", "note"):
        label, aliases = COLUMNS[name]
        notes.append([aliases[0], " / ".join(aliases[1:]), explained[name]])
    notes.column_dimensions["B"].width = 40
    notes.column_dimensions["C"].width = 70
    workbook.save(target)
