"""Import buildings, units and customers of one estate from .xlsx or .csv.

One sheet, one row per line of the list IT gets from sales or the previous
system; the first non-empty row names the columns, in Chinese or English
(楼栋/building, 房号/unit code, 楼层/floor, 面积/area, 用途/use, 户型/layout,
业主姓名/name, 电话/phone, 关系/relation, 身份证/ID number, 邮箱/email). A
row may describe a building, a unit (with its building), a customer, or a
customer living in a unit; any subset of the columns can be present.

The flow is upload -> check (`check_file`: every row validated, the first
rows kept for the preview, a per-row error report) -> commit (`run_commit`,
in a background task: all rows in one transaction, progress in the batch
row). Nothing is written while any row has an error. Re-importing a file
creates no duplicates: buildings and units are matched by code, customers by
normalised phone number within the estate, unit relations are unique.

Files are streamed (openpyxl read-only mode, csv reader), so memory stays
bounded apart from the codes needed to spot duplicates within the file.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import csv
import logging
import re
import uuid
import zipfile
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Iterator

import phonenumbers
from tortoise import connections, fields
from tortoise.expressions import Q

from core import clock
from core import settings as settings_module
from core.i18n import gettext, lazy_gettext as _
from core.models import Building, CustomerUnit, Relation, Unit, UnitUse
from core.people import PhoneError, normalize_phone, upsert_customer
from core.scope import ProjectScopedModel

log = logging.getLogger("courtyard.importer")

STALE_AFTER = timedelta(minutes=10)  # a running import not heard of for this long died with its process
MAX_ERRORS = 500  # kept in the report; the count covers all
PREVIEW_ROWS = 10
PROGRESS_EVERY = 100


class ImportState:
    INVALID = "invalid"
    READY = "ready"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CHOICES = {
        INVALID: _("Has errors"),
        READY: _("Ready to import"),
        RUNNING: _("Importing"),
        DONE: _("Imported"),
        FAILED: _("Failed"),
    }


class ImportBatch(ProjectScopedModel):
    """One uploaded file: its check result, then the progress of its commit."""

    id = fields.IntField(primary_key=True)
    filename = fields.CharField(max_length=255)
    kind = fields.CharField(max_length=8)  # "xlsx" or "csv"
    # Relative to [storage] path; cleared once the file is no longer needed.
    file_path = fields.CharField(max_length=255, default="")
    state = fields.CharField(max_length=16, default=ImportState.INVALID)
    total = fields.IntField(default=0)  # data rows in the file
    done = fields.IntField(default=0)
    errors = fields.JSONField(default=list)  # [{"row": 5, "column": "Phone", "message": "..."}]
    error_count = fields.IntField(default=0)
    columns = fields.JSONField(default=list)  # [[header as written, field or ""], ...]
    preview = fields.JSONField(default=list)  # the first rows, as text
    summary = fields.JSONField(default=dict)  # what the commit created and updated
    created_by = fields.ForeignKeyField("core.User", related_name=False, null=True, on_delete=fields.RESTRICT)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)
    finished_at = fields.DatetimeField(null=True)

    class Meta:
        table = "core_import_batch"
        ordering = ["-id"]

    @property
    def state_label(self) -> str:
        return str(ImportState.CHOICES.get(self.state, self.state))

    @property
    def interrupted(self) -> bool:
        """Running, but its process stopped (restart, crash): its transaction was rolled back."""
        if self.state != ImportState.RUNNING or self.id in _running:  # running here, however long it takes
            return False
        return self.updated_at < clock.now() - STALE_AFTER

    @property
    def percent(self) -> int:
        return min(100, self.done * 100 // self.total) if self.total else (100 if self.state == ImportState.DONE else 0)


# Columns ---------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    field: str
    label: Any
    zh: str  # header written in the template
    aliases: tuple[str, ...]


COLUMNS = [
    Column("building", _("Building"), "楼栋", ("楼栋", "楼栋号", "楼栋编号", "楼号", "栋", "栋号", "building", "buildingcode", "bldg")),
    Column("building_name", _("Building name"), "楼栋名称", ("楼栋名称", "楼名", "楼栋名", "buildingname")),
    Column("unit", _("Unit code"), "房号", ("房号", "房间号", "房屋编号", "房屋编码", "单元房号", "房号编码", "unit", "unitcode", "unitno", "room")),
    Column("floor", _("Floor"), "楼层", ("楼层", "所在楼层", "层", "floor")),
    Column("area", _("Area (m²)"), "面积", ("面积", "建筑面积", "房屋面积", "area", "grossarea")),
    Column("use", _("Use"), "用途", ("用途", "房屋用途", "use", "usage")),
    Column("layout", _("Layout"), "户型", ("户型", "layout")),
    Column("name", _("Name"), "业主姓名", ("业主姓名", "姓名", "客户姓名", "住户姓名", "业主", "name", "customername", "ownername", "customer")),
    Column("phone", _("Phone"), "电话", ("电话", "手机", "手机号", "手机号码", "联系电话", "电话号码", "联系方式", "phone", "phonenumber", "mobile", "tel")),
    Column("relation", _("Relation"), "关系", ("关系", "身份", "与房屋关系", "relation", "relationship")),
    Column("id_number", _("ID number"), "身份证号", ("身份证", "身份证号", "身份证号码", "证件号", "证件号码", "idnumber", "idcard", "idno")),
    Column("email", _("Email"), "邮箱", ("邮箱", "电子邮箱", "电子邮件", "邮件", "email", "mail")),
]
BY_FIELD = {c.field: c for c in COLUMNS}
_ALIASES = {alias: c.field for c in COLUMNS for alias in c.aliases}

USE_VALUES = {
    "住宅": UnitUse.RESIDENTIAL, "居住": UnitUse.RESIDENTIAL, "residential": UnitUse.RESIDENTIAL,
    "商业": UnitUse.COMMERCIAL, "商铺": UnitUse.COMMERCIAL, "商用": UnitUse.COMMERCIAL, "commercial": UnitUse.COMMERCIAL,
    "车位": UnitUse.PARKING, "停车位": UnitUse.PARKING, "车库": UnitUse.PARKING, "parking": UnitUse.PARKING,
}
RELATION_VALUES = {
    "业主": Relation.OWNER, "产权人": Relation.OWNER, "owner": Relation.OWNER,
    "租户": Relation.TENANT, "租客": Relation.TENANT, "承租人": Relation.TENANT, "tenant": Relation.TENANT,
    "家属": Relation.FAMILY, "家庭成员": Relation.FAMILY, "家人": Relation.FAMILY,
    "family": Relation.FAMILY, "familymember": Relation.FAMILY,
}
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
PHONE_SEPARATORS = re.compile(r"[/,;，；、|]+")


def _key(text: str) -> str:
    """Header or choice as compared: lower case, without brackets' content, spaces, `*`, `_`, `-`."""
    text = re.sub(r"[(（\[【].*?[)）\]】]", "", str(text or ""))
    return re.sub(r"[\s*_\-:：.]", "", text).lower()


def column_label(field_name: str | None) -> str:
    return str(BY_FIELD[field_name].label) if field_name in BY_FIELD else ""


class ImportFileError(ValueError):
    """The file as a whole cannot be read or understood; the message is for the user."""


# Reading ---------------------------------------------------------------------


def cell_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # phone numbers and unit codes typed as numbers in Excel
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    return str(value).replace("\x00", "").strip()  # PostgreSQL text cannot hold NUL


def csv_encoding(path: Path) -> str:
    """UTF-8 (with or without BOM), UTF-16 with BOM, or else GB18030 (what Chinese Excel writes)."""
    with open(path, "rb") as fh:
        head = fh.read(4)
        if head.startswith(codecs.BOM_UTF8):
            return "utf-8-sig"
        if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            return "utf-16"
        fh.seek(0)
        decoder = codecs.getincrementaldecoder("utf-8")()
        try:
            while chunk := fh.read(64 * 1024):
                decoder.decode(chunk)
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            return "gb18030"
    return "utf-8"


def _csv_rows(path: Path) -> Iterator[list[str]]:
    encoding = csv_encoding(path)
    try:
        with open(path, encoding=encoding, newline="") as fh:
            first = fh.readline()
            # Excel's "Unicode text" is tab-separated, some locales use semicolons.
            delimiter = max((",", "\t", ";"), key=first.count) if first else ","
            fh.seek(0)
            for row in csv.reader(fh, delimiter=delimiter):
                yield [cell.replace("\x00", "").strip() for cell in row]  # PostgreSQL text cannot hold NUL
    except UnicodeDecodeError:
        raise ImportFileError(
            gettext("The file is neither UTF-8 nor GB18030 text. Save it again as CSV (UTF-8) or as .xlsx.")
        ) from None
    except csv.Error as exc:
        raise ImportFileError(gettext("The CSV file cannot be read: %(error)s", error=str(exc))) from None


def _xlsx_rows(path: Path) -> Iterator[list[str]]:
    import openpyxl

    try:
        workbook = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except (zipfile.BadZipFile, KeyError, ValueError, OSError):
        raise ImportFileError(gettext("The file is not a valid .xlsx workbook.")) from None
    try:
        sheet = workbook.worksheets[0]
        for row in sheet.iter_rows(values_only=True):
            yield [cell_text(v) for v in row]
    finally:
        workbook.close()


def read_rows(path: Path, kind: str) -> Iterator[tuple[int, list[str]]]:
    """(row number as the spreadsheet shows it, cells as text) for every row of the first sheet."""
    rows = _xlsx_rows(path) if kind == "xlsx" else _csv_rows(path)
    for number, cells in enumerate(rows, start=1):
        yield number, cells


def map_header(cells: list[str]) -> tuple[dict[str, int], list[list[str]]]:
    """Field -> column index, and [[header, field or ""], ...] for the preview."""
    mapping: dict[str, int] = {}
    described: list[list[str]] = []
    for index, header in enumerate(cells):
        field_name = _ALIASES.get(_key(header), "") if header else ""
        if field_name and field_name in mapping:
            raise ImportFileError(
                gettext(
                    "Two columns mean %(field)s: %(first)s and %(second)s. Keep one.",
                    field=column_label(field_name), first=cells[mapping[field_name]], second=header,
                )
            )
        if field_name:
            mapping[field_name] = index
        described.append([header, field_name])
    while described and not described[-1][0]:
        described.pop()
    if not {"building", "unit", "name"} & mapping.keys():
        raise ImportFileError(
            gettext(
                "No known columns in the first row. Name the columns like the template does, "
                "e.g. 楼栋 / building, 房号 / unit code, 业主姓名 / name, 电话 / phone."
            )
        )
    if ("name" in mapping) != ("phone" in mapping):
        raise ImportFileError(gettext("Customers need both a name column and a phone column."))
    return mapping, described


# Rows ------------------------------------------------------------------------


@dataclass
class Row:
    number: int
    building: str = ""  # code: the building column, else the first part of the unit code
    building_name: str = ""
    unit: str = ""
    unit_values: dict[str, Any] = field(default_factory=dict)  # floor, area, use, layout when given
    name: str = ""
    phones: list[str] = field(default_factory=list)  # normalised
    relation: str = ""
    id_number: str = ""
    email: str = ""

    @property
    def has_customer(self) -> bool:
        return bool(self.name)


RowError = tuple[int, str, str]  # row number, field ("" for the whole row), message


def parse_row(number: int, cells: list[str], mapping: dict[str, int]) -> tuple[Row | None, list[RowError]]:
    """A row's values checked one by one; (None, []) for an empty row."""

    def get(name: str) -> str:
        index = mapping.get(name)
        return cells[index].strip() if index is not None and index < len(cells) else ""

    if not any(get(name) for name in mapping):
        return None, []
    row = Row(number)
    errors: list[RowError] = []

    def error(name: str, message: str) -> None:
        errors.append((number, name, message))

    def text(name: str, max_length: int) -> str:
        value = get(name)
        if len(value) > max_length:
            error(name, gettext("%(value)s is too long (at most %(max)s characters).", value=value, max=max_length))
        return value

    row.building = text("building", 16)
    row.building_name = text("building_name", 64)
    row.unit = text("unit", 32)
    if row.building_name and not row.building:
        error("building", gettext("Enter the building code for building %(name)s.", name=row.building_name))

    if floor := get("floor"):
        try:
            row.unit_values["floor"] = int(floor)
            if not -99 <= row.unit_values["floor"] <= 999:
                raise ValueError
        except ValueError:
            error("floor", gettext("Floor must be a whole number, not %(value)s.", value=floor))
    if area := get("area"):
        try:
            amount = Decimal(area.replace(",", "")).quantize(Decimal("0.01"))
            if not 0 <= amount < Decimal("100000000"):
                raise InvalidOperation
            row.unit_values["area"] = amount
        except InvalidOperation:
            error("area", gettext("Area must be a number of square metres, not %(value)s.", value=area))
    if use := get("use"):
        if _key(use) in USE_VALUES:
            row.unit_values["use"] = USE_VALUES[_key(use)]
        else:
            error("use", gettext("Unknown use %(value)s. Use one of: %(choices)s.", value=use,
                                 choices="住宅/residential, 商业/commercial, 车位/parking"))
    if layout := text("layout", 32):
        row.unit_values["layout"] = layout
    if row.unit_values and not row.unit:
        error("unit", gettext("Enter the unit code."))
    if row.unit and not row.building:
        prefix, dash, _rest = row.unit.partition("-")
        if dash and prefix:
            row.building = prefix
        else:
            error("unit", gettext(
                "Unit %(code)s has no building: fill in the building column or use codes like 3-2-1502.",
                code=row.unit,
            ))

    row.name = text("name", 64)
    raw_phones = [p.strip() for p in PHONE_SEPARATORS.split(get("phone")) if p.strip()]
    for raw in raw_phones:
        try:
            number_e164 = normalize_phone(raw)
            # A list from another system should hold real numbers, not just possible lengths.
            if not phonenumbers.is_valid_number(phonenumbers.parse(number_e164)):
                raise PhoneError(raw)
        except PhoneError:
            error("phone", gettext("%(value)s is not a phone number.", value=raw))
            continue
        if number_e164 not in row.phones:
            row.phones.append(number_e164)
    row.email = text("email", 255)
    if row.email and not EMAIL.match(row.email):
        error("email", gettext("%(value)s is not an email address.", value=row.email))
    row.id_number = text("id_number", 32)
    relation = get("relation")
    if relation:
        if _key(relation) in RELATION_VALUES:
            row.relation = RELATION_VALUES[_key(relation)]
        else:
            error("relation", gettext("Unknown relation %(value)s. Use one of: %(choices)s.", value=relation,
                                      choices="业主/owner, 租户/tenant, 家属/family"))
    customer_given = row.name or raw_phones or row.email or row.id_number or relation
    if customer_given:
        if not row.name:
            error("name", gettext("Enter the customer's name."))
        if not raw_phones:
            error("phone", gettext("Enter the customer's phone number."))
        if relation and not row.unit:
            error("relation", gettext("A relation needs a unit code."))
    if row.has_customer and row.unit and not row.relation:
        row.relation = Relation.OWNER
    return row, errors


class FileChecker:
    """Checks across rows: units listed twice, one phone for two people, unknown buildings."""

    def __init__(self, mapping: dict[str, int], known_buildings: set[str]):
        self.has_building_column = "building" in mapping
        self.known_buildings = known_buildings
        self.units: dict[str, tuple[int, dict[str, Any]]] = {}
        self.phones: dict[str, tuple[int, str]] = {}

    def check(self, row: Row) -> list[RowError]:
        errors: list[RowError] = []
        # Without a building column a unit's building comes from its code and must exist already.
        if row.unit and row.building and not self.has_building_column and row.building not in self.known_buildings:
            errors.append((row.number, "unit", self._unknown(row.building)))
        if row.unit:
            details = {"building": row.building, **row.unit_values}
            seen = self.units.get(row.unit)
            if seen is None:
                self.units[row.unit] = (row.number, details)
            elif any(seen[1][key] != value for key, value in details.items() if key in seen[1]):
                errors.append((row.number, "unit", gettext(
                    "Unit %(code)s is also in row %(row)s with a different building, floor, area, use or layout.",
                    code=row.unit, row=seen[0],
                )))
            elif not row.has_customer:
                errors.append((row.number, "unit", gettext(
                    "Unit %(code)s is listed twice (also row %(row)s).", code=row.unit, row=seen[0]
                )))
            else:
                seen[1].update(details)
        for number in row.phones:
            seen_phone = self.phones.get(number)
            if seen_phone is None:
                self.phones[number] = (row.number, row.name)
            elif seen_phone[1] != row.name:
                errors.append((row.number, "phone", gettext(
                    "Phone %(phone)s is also given for %(name)s in row %(row)s.",
                    phone=number, name=seen_phone[1], row=seen_phone[0],
                )))
        return errors

    @staticmethod
    def _unknown(code: str) -> str:
        return gettext("Unknown building %(code)s: it is not in this estate. Add a building column to create it.", code=code)


@dataclass
class CheckResult:
    columns: list[list[str]]
    preview: list[list[str]]
    total: int
    errors: list[dict[str, Any]]
    error_count: int


def check_file(path: Path, kind: str, known_buildings: set[str]) -> CheckResult:
    """Read and check every row (blocking: run it in a thread). Raises ImportFileError."""
    mapping: dict[str, int] | None = None
    columns: list[list[str]] = []
    preview: list[list[str]] = []
    errors: list[dict[str, Any]] = []
    error_count = 0
    total = 0
    checker: FileChecker | None = None

    def report(found: list[RowError]) -> None:
        nonlocal error_count
        error_count += len(found)
        for number, name, message in found:
            if len(errors) < MAX_ERRORS:
                errors.append({"row": number, "column": column_label(name), "message": message})

    with contextlib.closing(read_rows(path, kind)) as rows:
        for number, cells in rows:
            if mapping is None:
                if not any(cells):
                    continue
                mapping, columns = map_header(cells)
                checker = FileChecker(mapping, known_buildings)
                continue
            row, found = parse_row(number, cells, mapping)
            if row is None:
                continue
            total += 1
            if len(preview) < PREVIEW_ROWS:
                shown = [cell[:100] for cell in cells[: len(columns)]]
                preview.append(shown + [""] * (len(columns) - len(shown)))
            report(found)
            report(checker.check(row))
    if mapping is None:
        raise ImportFileError(gettext("The file is empty."))
    if total == 0:
        raise ImportFileError(gettext("The file has column names but no rows below them."))
    return CheckResult(columns, preview, total, errors, error_count)


# Writing ---------------------------------------------------------------------


class CommitFailed(Exception):
    def __init__(self, errors: list[RowError]):
        super().__init__(errors)
        self.errors = errors


class Writer:
    """Writes checked rows of one estate: upserts by code and phone, counts what changed."""

    def __init__(self, project_id: int, mapping: dict[str, int]):
        self.project_id = project_id
        self.has_building_column = "building" in mapping
        self.buildings: dict[str, Building] = {}
        self.summary = dict.fromkeys(
            ("buildings_created", "buildings_updated", "units_created", "units_updated",
             "customers_created", "customers_updated", "links_created"), 0,
        )

    async def load(self) -> None:
        self.buildings = {b.code: b for b in await Building.filter(project_id=self.project_id)}

    async def write(self, row: Row) -> None:
        building = await self._building(row) if row.building else None
        unit = await self._unit(row, building) if row.unit else None
        if row.has_customer:
            customer, created = await upsert_customer(
                self.project_id, row.name, row.phones, email=row.email, id_number=row.id_number
            )
            self.summary["customers_created" if created else "customers_updated"] += 1
            if unit is not None:
                _link, created = await CustomerUnit.get_or_create(
                    customer_id=customer.id, unit_id=unit.id, relation=row.relation,
                    defaults={"project_id": self.project_id},
                )
                self.summary["links_created"] += int(created)

    async def _building(self, row: Row) -> Building:
        building = self.buildings.get(row.building)
        if building is None:
            if row.unit and not self.has_building_column:
                raise CommitFailed([(row.number, "unit", FileChecker._unknown(row.building))])
            building = await Building.create(
                project_id=self.project_id, code=row.building,
                name=row.building_name or gettext("Building %(code)s", code=row.building),
            )
            self.buildings[row.building] = building
            self.summary["buildings_created"] += 1
        elif row.building_name and row.building_name != building.name:
            building.name = row.building_name
            await building.save(update_fields=["name"])
            self.summary["buildings_updated"] += 1
        return building

    async def _unit(self, row: Row, building: Building) -> Unit:
        unit = await Unit.get_or_none(project_id=self.project_id, code=row.unit)
        if unit is None:
            self.summary["units_created"] += 1
            return await Unit.create(project_id=self.project_id, building=building, code=row.unit, **row.unit_values)
        changes = {k: v for k, v in row.unit_values.items() if getattr(unit, k) != v}
        # Without a building column the building comes from the code; an existing unit stays where it is.
        if self.has_building_column and unit.building_id != building.id:
            changes["building_id"] = building.id
        if changes:
            for key, value in changes.items():
                setattr(unit, key, value)
            await unit.save(update_fields=list(changes))
            self.summary["units_updated"] += 1
        return unit


def storage_root() -> Path:
    return settings_module.current().storage_path


# Rows written so far by the imports running in this process (what `rows_done` shows).
_running: dict[int, int] = {}


def rows_done(batch: ImportBatch) -> int:
    """Rows of `batch` written so far, also while its transaction is still open."""
    return max(batch.done, _running.get(batch.id, 0))


async def run_commit(batch_id: int) -> None:
    """Write a checked batch in one transaction; progress and outcome go to the batch row.

    Progress shows while the import runs: on PostgreSQL it is written to the
    batch row through a connection outside the transaction (any app process
    shows it); on SQLite, which allows one writer at a time, the count is kept
    in this process (SQLite means one app process) and the rows are written
    over a connection of the import's own, so the app keeps answering pages
    and progress polls meanwhile instead of waiting for the commit.
    """
    _running[batch_id] = 0
    try:
        await _commit(batch_id)
    finally:
        _running.pop(batch_id, None)


async def _commit(batch_id: int) -> None:
    from core.db import own_connection, transaction

    batch = await ImportBatch.get(id=batch_id)
    path = storage_root() / batch.file_path
    outside = connections.get("default")
    live_progress = outside.capabilities.dialect != "sqlite"
    done = 0
    try:
        async with own_connection(), transaction():
            with contextlib.closing(read_rows(path, batch.kind)) as rows:
                mapping: dict[str, int] | None = None
                writer: Writer | None = None
                for number, cells in rows:
                    if mapping is None:
                        if any(cells):
                            mapping, _columns = map_header(cells)
                            writer = Writer(batch.project_id, mapping)
                            await writer.load()
                        continue
                    row, errors = parse_row(number, cells, mapping)
                    if row is None:
                        continue
                    if errors:
                        raise CommitFailed(errors)
                    await writer.write(row)
                    done += 1
                    _running[batch.id] = done
                    if live_progress and done % PROGRESS_EVERY == 0:
                        await ImportBatch.filter(id=batch.id).using_db(outside).update(
                            done=done, updated_at=clock.now()
                        )
    except (CommitFailed, ImportFileError) as exc:
        found = exc.errors if isinstance(exc, CommitFailed) else [(0, "", str(exc))]
        await _finish(batch, ImportState.FAILED, errors=[
            {"row": n or None, "column": column_label(name), "message": message} for n, name, message in found
        ])
        return
    except Exception:
        log.exception("import batch %s failed", batch.id)
        await _finish(batch, ImportState.FAILED, errors=[{"row": None, "column": "", "message": gettext(
            "The import stopped because of an unexpected error (it was logged). Nothing was imported; try again."
        )}])
        return
    await _finish(batch, ImportState.DONE, done=done, summary=writer.summary if writer else {})


async def _finish(batch: ImportBatch, state: str, *, done: int | None = None, errors=None, summary=None) -> None:
    values: dict[str, Any] = {"state": state, "finished_at": clock.now()}
    if done is not None:
        values["done"] = done
    if errors is not None:
        values["errors"] = errors
        values["error_count"] = len(errors)
    if summary is not None:
        values["summary"] = summary
    if state == ImportState.DONE:
        _remove_file(batch)
        values["file_path"] = ""
    await ImportBatch.filter(id=batch.id).update(**values)


def _remove_file(batch: ImportBatch) -> None:
    if batch.file_path:
        (storage_root() / batch.file_path).unlink(missing_ok=True)


_tasks: set[asyncio.Task] = set()


async def start_commit(batch: ImportBatch) -> bool:
    """Start committing a ready, failed or interrupted batch in the background; False if it runs or ran.

    The state changes with one conditional UPDATE, so two clicks (or two app
    processes) never start the same import twice.
    """
    if batch.id in _running:
        return False
    now = clock.now()
    claimed = await ImportBatch.filter(
        Q(state__in=[ImportState.READY, ImportState.FAILED])
        | Q(state=ImportState.RUNNING, updated_at__lt=now - STALE_AFTER),
        id=batch.id,
    ).exclude(file_path="").update(state=ImportState.RUNNING, done=0, errors=[], error_count=0, updated_at=now)
    if not claimed:
        return False
    # The task inherits this request's scope and language.
    task = asyncio.create_task(run_commit(batch.id))
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)
    return True


async def create_batch(project_id: int, filename: str, kind: str, stored: Path, author_id: int | None) -> ImportBatch:
    """Check a stored upload and record the result; the file is kept only when it can be imported."""
    known = set(await Building.filter(project_id=project_id).values_list("code", flat=True))
    batch = ImportBatch(
        project_id=project_id, filename=filename, kind=kind,
        file_path=stored.relative_to(storage_root()).as_posix(), created_by_id=author_id,
    )
    try:
        result = await asyncio.to_thread(check_file, stored, kind, known)
    except ImportFileError as exc:
        batch.errors = [{"row": None, "column": "", "message": str(exc)}]
        batch.error_count = 1
    else:
        batch.columns, batch.preview, batch.total = result.columns, result.preview, result.total
        batch.errors, batch.error_count = result.errors, result.error_count
        batch.state = ImportState.INVALID if result.error_count else ImportState.READY
    if batch.state != ImportState.READY:
        _remove_file(batch)
        batch.file_path = ""
    await batch.save()
    return batch


def new_upload_path(project_id: int, kind: str) -> Path:
    """Where to store an upload (`attachments.save_stream` creates the folder, or says the disk is full)."""
    return storage_root() / "imports" / str(project_id) / f"{uuid.uuid4().hex}.{kind}"


def template_workbook(target) -> None:
    """The import template: the expected headers, and a sheet explaining each column."""
    import openpyxl
    from openpyxl.styles import Font

    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.title = gettext("Import")
    sheet.append([c.zh for c in COLUMNS])
    for cell in sheet[1]:
        cell.font = Font(bold=True)
        sheet.column_dimensions[cell.column_letter].width = 14
    # Text format for codes, phones and ID numbers so Excel keeps leading zeros and long digits.
    for name in ("building", "unit", "phone", "id_number"):
        letter = sheet.cell(row=1, column=COLUMNS.index(BY_FIELD[name]) + 1).column_letter
        sheet.column_dimensions[letter].number_format = "@"
    help_sheet = workbook.create_sheet(gettext("Help"))
    help_sheet.append([gettext("Column"), gettext("Also accepted"), gettext("Example"), gettext("Notes")])
    examples = {
        "building": ("3", gettext("Created if new; without this column units must use existing buildings.")),
        "building_name": ("3栋", ""),
        "unit": ("3-2-1502", gettext("Unique in the estate; the first part is the building when there is no building column.")),
        "floor": ("15", gettext("Whole number; negative for basements.")),
        "area": ("88.50", gettext("Square metres.")),
        "use": ("住宅", "住宅/residential, 商业/commercial, 车位/parking"),
        "layout": ("3室2厅", ""),
        "name": ("张三", gettext("With a phone number; matched to existing customers by phone.")),
        "phone": ("13800138000", gettext("Several numbers separated by /")),
        "relation": ("业主", "业主/owner, 租户/tenant, 家属/family"),
        "id_number": ("", ""),
        "email": ("zhangsan@example.com", ""),
    }
    for column in COLUMNS:
        example, note = examples[column.field]
        help_sheet.append([column.zh, " / ".join(a for a in column.aliases if a != column.zh), example, note])
    help_sheet.column_dimensions["B"].width = 40
    help_sheet.column_dimensions["D"].width = 60
    workbook.save(target)
