"""Unit handover (交房) and key custody (钥匙管理) records.

A handover batch (交房批次) plans the handover of the units of some buildings
over a few days, cut into time slots of limited capacity. Every unit of the
batch gets one `UnitHandover`: the owner books an appointment (交房预约), is
checked in on the day, the unit is inspected against the checklist of its
type (验房单), defects go to a contractor under warranty (维保) or to the
in-house technicians (请修), and the handover completes when the owner signs.

Capacity, single active appointments, single open key checkouts and key
states are guarded by the database (unique columns and conditional UPDATEs),
never by reading first and writing later, so two staff clicking at the same
moment cannot both win.
"""

from __future__ import annotations

from tortoise import fields

from core.api import ChangeTracked, ProjectScopedModel, lazy_gettext as _


class HandoverState:
    PLANNED = "planned"
    BOOKED = "booked"
    CHECKED_IN = "checked_in"
    INSPECTING = "inspecting"
    ACCEPTED = "accepted"
    CHOICES = {
        PLANNED: _("Planned"),
        BOOKED: _("Appointment booked"),
        CHECKED_IN: _("Checked in"),
        INSPECTING: _("Inspection"),
        ACCEPTED: _("Handed over"),
    }
    BADGES = {PLANNED: "muted", BOOKED: "new", CHECKED_IN: "progress", INSPECTING: "warning", ACCEPTED: "done"}


class AppointmentState:
    BOOKED = "booked"
    CHECKED_IN = "checked_in"
    CANCELLED = "cancelled"
    RESCHEDULED = "rescheduled"
    CHOICES = {
        BOOKED: _("Booked"),
        CHECKED_IN: _("Checked in"),
        CANCELLED: _("Cancelled"),
        RESCHEDULED: _("Rescheduled"),
    }
    BADGES = {BOOKED: "new", CHECKED_IN: "done", CANCELLED: "muted", RESCHEDULED: "muted"}


class BookedVia:
    STAFF = "staff"
    LINK = "link"
    CHOICES = {STAFF: _("By staff"), LINK: _("By the owner (email link)")}


class HandoverBatch(ProjectScopedModel):
    """A handover batch (交房批次) of one or more buildings, e.g. phase 2, with its days."""

    view_permission = "handover.view"

    id = fields.IntField(primary_key=True)
    name = fields.CharField(max_length=64)
    start_date = fields.DateField()
    end_date = fields.DateField()
    booking_open = fields.BooleanField(default=True)
    note = fields.TextField(default="")
    created_by = fields.ForeignKeyField("core.User", related_name=False, null=True, on_delete=fields.RESTRICT)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "handover_batch"
        unique_together = (("project", "name"),)
        ordering = ["-start_date", "id"]

    def __str__(self) -> str:
        return self.name


class TimeSlot(ProjectScopedModel):
    """A time slot of a handover day. `booked` only changes through a conditional UPDATE bounded by `capacity`."""

    id = fields.IntField(primary_key=True)
    batch = fields.ForeignKeyField("handover.HandoverBatch", related_name="slots", on_delete=fields.CASCADE)
    day = fields.DateField()  # local date of the estate
    start_minute = fields.SmallIntField()  # minutes after local midnight
    end_minute = fields.SmallIntField()
    capacity = fields.SmallIntField()
    booked = fields.SmallIntField(default=0)

    class Meta:
        table = "handover_time_slot"
        unique_together = (("batch", "day", "start_minute"),)
        ordering = ["day", "start_minute"]

    @staticmethod
    def clock(minute: int) -> str:
        return f"{minute // 60:02d}:{minute % 60:02d}"

    @property
    def start(self) -> str:
        return self.clock(self.start_minute)

    @property
    def end(self) -> str:
        return self.clock(self.end_minute)

    @property
    def free(self) -> int:
        return max(0, self.capacity - self.booked)

    def __str__(self) -> str:
        return f"{self.day.isoformat()} {self.start}–{self.end}"


class UnitHandover(ProjectScopedModel, ChangeTracked):
    """The handover of one unit: one per unit, planned by a batch, completed by the owner's signature."""

    view_permission = "handover.view"

    id = fields.IntField(primary_key=True)
    batch = fields.ForeignKeyField("handover.HandoverBatch", related_name="handovers", on_delete=fields.RESTRICT)
    unit = fields.OneToOneField("core.Unit", related_name=False, on_delete=fields.RESTRICT)
    owner = fields.ForeignKeyField("core.Customer", related_name=False, null=True, on_delete=fields.RESTRICT)
    state = fields.CharField(max_length=16, default=HandoverState.PLANNED, db_index=True)
    # The owner's acceptance: who signed, when, who recorded it, and the open defects they accepted.
    accepted_at = fields.DatetimeField(null=True)
    signed_by = fields.CharField(max_length=64, default="")
    accepted_by = fields.ForeignKeyField("core.User", related_name=False, null=True, on_delete=fields.RESTRICT)
    open_defects_accepted = fields.JSONField(default=list)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "handover_unit_handover"
        ordering = ["id"]


class Appointment(ProjectScopedModel):
    """An owner's appointment in a time slot. `active_for` holds the handover id while the appointment counts."""

    view_permission = "handover.view"

    id = fields.IntField(primary_key=True)
    handover = fields.ForeignKeyField("handover.UnitHandover", related_name="appointments", on_delete=fields.CASCADE)
    slot = fields.ForeignKeyField("handover.TimeSlot", related_name="appointments", on_delete=fields.RESTRICT)
    # Unique while set, empty once cancelled or moved: the database allows one live appointment per unit.
    active_for = fields.IntField(null=True, unique=True)
    state = fields.CharField(max_length=16, default=AppointmentState.BOOKED, db_index=True)
    via = fields.CharField(max_length=8, default=BookedVia.STAFF)
    visitors = fields.SmallIntField(default=1)
    note = fields.CharField(max_length=255, default="")
    booked_by = fields.ForeignKeyField("core.User", related_name=False, null=True, on_delete=fields.RESTRICT)
    created_at = fields.DatetimeField()
    checked_in_at = fields.DatetimeField(null=True)
    cancelled_at = fields.DatetimeField(null=True)
    reminded_at = fields.DatetimeField(null=True)

    class Meta:
        table = "handover_appointment"
        ordering = ["-id"]


# Inspection ---------------------------------------------------------------------------


class ChecklistTemplate(ProjectScopedModel):
    """The inspection checklist (验房单) of one unit type, matched on `core.Unit.layout` (empty: every other type)."""

    id = fields.IntField(primary_key=True)
    layout = fields.CharField(max_length=32)  # empty: the checklist of every other unit type
    name = fields.CharField(max_length=64)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "handover_checklist"
        unique_together = (("project", "layout"),)
        ordering = ["layout"]

    def __str__(self) -> str:
        return self.name


class ChecklistLine(ProjectScopedModel):
    """One room × item line of a checklist. Mandatory lines must be fine before the owner can accept."""

    id = fields.IntField(primary_key=True)
    template = fields.ForeignKeyField("handover.ChecklistTemplate", related_name="lines", on_delete=fields.CASCADE)
    room = fields.CharField(max_length=32)
    item = fields.CharField(max_length=64)
    mandatory = fields.BooleanField(default=False)
    position = fields.SmallIntField(default=0)

    class Meta:
        table = "handover_checklist_line"
        ordering = ["position", "id"]


class ItemResult:
    PENDING = "pending"
    OK = "ok"
    DEFECT = "defect"
    CHOICES = {PENDING: _("Not checked"), OK: _("Fine"), DEFECT: _("Defect")}
    BADGES = {PENDING: "muted", OK: "done", DEFECT: "danger"}


class Inspection(ProjectScopedModel):
    """An on-site inspection of a unit, with the checklist copied in when it started."""

    view_permission = "handover.view"

    id = fields.IntField(primary_key=True)
    handover = fields.ForeignKeyField("handover.UnitHandover", related_name="inspections", on_delete=fields.CASCADE)
    checklist_name = fields.CharField(max_length=64, default="")
    inspector = fields.ForeignKeyField("core.User", related_name=False, null=True, on_delete=fields.RESTRICT)
    started_at = fields.DatetimeField()
    finished_at = fields.DatetimeField(null=True)

    class Meta:
        table = "handover_inspection"
        ordering = ["-id"]


class InspectionItem(ProjectScopedModel):
    id = fields.IntField(primary_key=True)
    inspection = fields.ForeignKeyField("handover.Inspection", related_name="items", on_delete=fields.CASCADE)
    room = fields.CharField(max_length=32)
    item = fields.CharField(max_length=64)
    mandatory = fields.BooleanField(default=False)
    position = fields.SmallIntField(default=0)
    result = fields.CharField(max_length=8, default=ItemResult.PENDING)
    checked_by = fields.ForeignKeyField("core.User", related_name=False, null=True, on_delete=fields.RESTRICT)
    checked_at = fields.DatetimeField(null=True)

    class Meta:
        table = "handover_inspection_item"
        ordering = ["position", "id"]


# Contractors and defects -----------------------------------------------------------------


class Contractor(ProjectScopedModel):
    """A construction contractor (施工单位) who repairs defects under warranty (维保)."""

    view_permission = "handover.view"

    id = fields.IntField(primary_key=True)
    name = fields.CharField(max_length=96)
    trade = fields.CharField(max_length=64, default="")  # e.g. 土建, 水电, 门窗
    email = fields.CharField(max_length=255, default="")
    phone = fields.CharField(max_length=32, default="")
    warranty_until = fields.DateField(null=True)
    is_active = fields.BooleanField(default=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "handover_contractor"
        unique_together = (("project", "name"),)
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class ContractorContact(ProjectScopedModel):
    """A person at a contractor: site manager, warranty desk."""

    id = fields.IntField(primary_key=True)
    contractor = fields.ForeignKeyField("handover.Contractor", related_name="contacts", on_delete=fields.CASCADE)
    name = fields.CharField(max_length=64)
    role = fields.CharField(max_length=64, default="")
    phone = fields.CharField(max_length=32, default="")
    email = fields.CharField(max_length=255, default="")

    class Meta:
        table = "handover_contractor_contact"
        ordering = ["id"]


class Responsible:
    CONTRACTOR = "contractor"
    IN_HOUSE = "in_house"
    CHOICES = {CONTRACTOR: _("Contractor under warranty"), IN_HOUSE: _("In-house technicians")}


class Severity:
    MINOR = "minor"
    MAJOR = "major"
    CRITICAL = "critical"
    CHOICES = {MINOR: _("Minor"), MAJOR: _("Major"), CRITICAL: _("Critical")}
    BADGES = {MINOR: "muted", MAJOR: "warning", CRITICAL: "danger"}


class DefectCategory:
    WALLS = "walls"
    FLOORS = "floors"
    DOORS_WINDOWS = "doors_windows"
    PLUMBING = "plumbing"
    ELECTRICAL = "electrical"
    FIXTURES = "fixtures"
    OTHER = "other"
    CHOICES = {
        WALLS: _("Walls and ceilings"),
        FLOORS: _("Floors"),
        DOORS_WINDOWS: _("Doors and windows"),
        PLUMBING: _("Plumbing and leaks"),
        ELECTRICAL: _("Electrical"),
        FIXTURES: _("Fixtures and fittings"),
        OTHER: _("Other"),
    }


class DefectState:
    OPEN = "open"
    REPAIRED = "repaired"
    VERIFIED = "verified"
    ACCEPTED = "accepted"
    CHOICES = {
        OPEN: _("Awaiting repair"),
        REPAIRED: _("Repaired, awaiting re-inspection"),
        VERIFIED: _("Re-inspected, awaiting owner"),
        ACCEPTED: _("Accepted by owner"),
    }
    BADGES = {OPEN: "danger", REPAIRED: "progress", VERIFIED: "warning", ACCEPTED: "done"}
    UNRESOLVED = (OPEN, REPAIRED)


class Defect(ProjectScopedModel):
    """A defect found at inspection: repair, re-inspection and the owner's acceptance."""

    view_permission = "handover.view"

    id = fields.IntField(primary_key=True)
    number = fields.CharField(max_length=24)
    handover = fields.ForeignKeyField("handover.UnitHandover", related_name="defects", on_delete=fields.RESTRICT)
    unit = fields.ForeignKeyField("core.Unit", related_name=False, on_delete=fields.RESTRICT)
    item = fields.ForeignKeyField("handover.InspectionItem", related_name="defects", null=True, on_delete=fields.SET_NULL)
    mandatory = fields.BooleanField(default=False)
    location = fields.CharField(max_length=64)
    description = fields.TextField()
    category = fields.CharField(max_length=16, default=DefectCategory.OTHER)
    severity = fields.CharField(max_length=8, default=Severity.MINOR)
    responsible = fields.CharField(max_length=12, default=Responsible.CONTRACTOR)
    contractor = fields.ForeignKeyField("handover.Contractor", related_name="defects", null=True, on_delete=fields.RESTRICT)
    deadline = fields.DateField()  # local date
    state = fields.CharField(max_length=12, default=DefectState.OPEN, db_index=True)
    repair_note = fields.TextField(default="")
    repaired_at = fields.DatetimeField(null=True)
    verified_at = fields.DatetimeField(null=True)
    accepted_at = fields.DatetimeField(null=True)
    reopened = fields.SmallIntField(default=0)
    escalation_level = fields.SmallIntField(default=0)
    reminded_on = fields.DateField(null=True)
    recorded_by = fields.ForeignKeyField("core.User", related_name=False, null=True, on_delete=fields.RESTRICT)
    created_at = fields.DatetimeField()

    class Meta:
        table = "handover_defect"
        unique_together = (("project", "number"),)
        ordering = ["-id"]

    def __str__(self) -> str:
        return self.number


# Keys -------------------------------------------------------------------------------


class KeyKind:
    ENTRANCE = "entrance"
    MAILBOX = "mailbox"
    GARAGE = "garage"
    CARD = "card"
    OTHER = "other"
    CHOICES = {
        ENTRANCE: _("Entrance door"),
        MAILBOX: _("Mailbox"),
        GARAGE: _("Garage / storage"),
        CARD: _("Access card"),
        OTHER: _("Other"),
    }


class KeyState:
    IN = "in"  # in its cabinet slot, custodian: the key keeper
    OUT = "out"  # checked out, custodian: the borrower
    OWNER = "owner"  # handed to the owner at handover: the company's custody has ended
    LOST = "lost"
    RETIRED = "retired"  # replaced after re-keying
    CHOICES = {
        IN: _("In the cabinet"),
        OUT: _("Checked out"),
        OWNER: _("Handed to the owner"),
        LOST: _("Lost"),
        RETIRED: _("Retired (re-keyed)"),
    }
    BADGES = {IN: "done", OUT: "warning", OWNER: "closed", LOST: "danger", RETIRED: "muted"}


class HolderKind:
    STAFF = "staff"
    OWNER = "owner"
    CONTRACTOR = "contractor"
    CHOICES = {STAFF: _("Staff"), OWNER: _("Owner"), CONTRACTOR: _("Contractor")}


class KeySet(ProjectScopedModel, ChangeTracked):
    """A sealed set of keys of one unit, stored in a cabinet slot, with exactly one named custodian.

    The custodian is a staff user while the set is in the cabinet or with
    staff, the borrower (owner or contractor) while it is out, and the owner
    once handed over. `custodian_name` always holds the name shown.
    """

    view_permission = "handover.view"

    id = fields.IntField(primary_key=True)
    unit = fields.ForeignKeyField("core.Unit", related_name=False, on_delete=fields.RESTRICT)
    tag = fields.CharField(max_length=32)
    kind = fields.CharField(max_length=12, default=KeyKind.ENTRANCE)
    count = fields.SmallIntField(default=1)
    sealed = fields.BooleanField(default=True)
    slot = fields.CharField(max_length=16)  # cabinet slot, e.g. A-03
    state = fields.CharField(max_length=8, default=KeyState.IN, db_index=True)
    custodian_kind = fields.CharField(max_length=12, default=HolderKind.STAFF)
    custodian_user = fields.ForeignKeyField("core.User", related_name=False, null=True, on_delete=fields.RESTRICT)
    custodian_customer = fields.ForeignKeyField("core.Customer", related_name=False, null=True, on_delete=fields.RESTRICT)
    custodian_contractor = fields.ForeignKeyField(
        "handover.Contractor", related_name=False, null=True, on_delete=fields.RESTRICT
    )
    custodian_name = fields.CharField(max_length=96)
    replaces = fields.ForeignKeyField("handover.KeySet", related_name=False, null=True, on_delete=fields.SET_NULL)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "handover_key_set"
        unique_together = (("project", "tag"),)
        ordering = ["tag"]

    def __str__(self) -> str:
        return self.tag


class KeyCheckout(ProjectScopedModel):
    """One checkout of a key set: to whom, why, until when, and who brought it back to whom.

    `open_for` holds the key set id while the checkout is open: the database
    refuses a second open checkout of the same set.
    """

    view_permission = "handover.view"

    id = fields.IntField(primary_key=True)
    keyset = fields.ForeignKeyField("handover.KeySet", related_name="checkouts", on_delete=fields.RESTRICT)
    open_for = fields.IntField(null=True, unique=True)
    holder_kind = fields.CharField(max_length=12)
    holder_user = fields.ForeignKeyField("core.User", related_name=False, null=True, on_delete=fields.RESTRICT)
    holder_customer = fields.ForeignKeyField("core.Customer", related_name=False, null=True, on_delete=fields.RESTRICT)
    holder_contractor = fields.ForeignKeyField(
        "handover.Contractor", related_name=False, null=True, on_delete=fields.RESTRICT
    )
    holder_name = fields.CharField(max_length=96)
    purpose = fields.CharField(max_length=255)
    out_at = fields.DatetimeField()
    due_at = fields.DatetimeField()
    issued_by = fields.ForeignKeyField("core.User", related_name=False, on_delete=fields.RESTRICT)
    returned_at = fields.DatetimeField(null=True)
    returned_by_name = fields.CharField(max_length=96, default="")
    received_by = fields.ForeignKeyField("core.User", related_name=False, null=True, on_delete=fields.RESTRICT)
    overdue_alerted_at = fields.DatetimeField(null=True)

    class Meta:
        table = "handover_key_checkout"
        ordering = ["-id"]


class AuditState:
    OPEN = "open"
    DONE = "done"
    CHOICES = {OPEN: _("In progress"), DONE: _("Finished")}


class CabinetAudit(ProjectScopedModel):
    """A count of the key cabinet: every set that should be there, confirmed slot by slot."""

    view_permission = "handover.keys"

    id = fields.IntField(primary_key=True)
    state = fields.CharField(max_length=8, default=AuditState.OPEN)
    started_by = fields.ForeignKeyField("core.User", related_name=False, on_delete=fields.RESTRICT)
    started_at = fields.DatetimeField()
    finished_at = fields.DatetimeField(null=True)
    discrepancies = fields.SmallIntField(default=0)

    class Meta:
        table = "handover_cabinet_audit"
        ordering = ["-id"]


class AuditFinding:
    PENDING = "pending"
    PRESENT = "present"
    MISSING = "missing"
    WRONG_SLOT = "wrong_slot"
    SEAL_BROKEN = "seal_broken"
    CHOICES = {
        PENDING: _("Not checked"),
        PRESENT: _("Present, sealed"),
        MISSING: _("Missing"),
        WRONG_SLOT: _("In another slot"),
        SEAL_BROKEN: _("Seal broken"),
    }
    BADGES = {PENDING: "muted", PRESENT: "done", MISSING: "danger", WRONG_SLOT: "warning", SEAL_BROKEN: "warning"}


class AuditLine(ProjectScopedModel):
    """Where one key set should be at the time of the audit, and what the auditor found."""

    id = fields.IntField(primary_key=True)
    audit = fields.ForeignKeyField("handover.CabinetAudit", related_name="lines", on_delete=fields.CASCADE)
    keyset = fields.ForeignKeyField("handover.KeySet", related_name=False, on_delete=fields.RESTRICT)
    expected_slot = fields.CharField(max_length=16)
    expected_state = fields.CharField(max_length=8)
    expected_custodian = fields.CharField(max_length=96)
    finding = fields.CharField(max_length=12, default=AuditFinding.PENDING)
    note = fields.CharField(max_length=255, default="")
    checked_by = fields.ForeignKeyField("core.User", related_name=False, null=True, on_delete=fields.RESTRICT)
    checked_at = fields.DatetimeField(null=True)

    class Meta:
        table = "handover_audit_line"
        unique_together = (("audit", "keyset"),)
        ordering = ["expected_slot", "id"]
