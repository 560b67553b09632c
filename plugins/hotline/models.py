"""Work orders (工单), their categories, assignments, materials and callback tasks (回访).

Tables are prefixed `hotline_`. Every record belongs to one estate (ProjectScopedModel).
The state machine of a work order lives in `plugins.hotline.workorders`; the
models only hold the facts.
"""

from __future__ import annotations

from tortoise import fields

from core.api import ChangeTracked, ProjectScopedModel, lazy_gettext as _


class Kind:
    """What the contact is about (the classification at intake)."""

    CONSULTATION = "consultation"
    REPAIR = "repair"
    COMPLAINT = "complaint"
    SUGGESTION = "suggestion"
    PRAISE = "praise"
    OTHER = "other"
    CHOICES = {
        CONSULTATION: _("Consultation"),
        REPAIR: _("Repair"),
        COMPLAINT: _("Complaint"),
        SUGGESTION: _("Suggestion"),
        PRAISE: _("Praise"),
        OTHER: _("Other"),
    }


class Urgency:
    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"
    EMERGENCY = "emergency"
    CHOICES = {LOW: _("Low"), NORMAL: _("Normal"), HIGH: _("High"), EMERGENCY: _("Emergency")}
    # Emergencies (burst pipe, lift entrapment) are handled around the clock:
    # their deadlines count wall-clock hours, the others working hours only.
    AROUND_THE_CLOCK = {EMERGENCY}


class ContactChannel:
    """Where the contact came in (unified intake)."""

    PHONE = "phone"
    VISIT = "visit"
    ONLINE = "online"
    EMAIL = "email"
    CHOICES = {PHONE: _("Phone"), VISIT: _("Visit"), ONLINE: _("Online / WeChat"), EMAIL: _("Email")}


class Status:
    NEW = "new"
    DISPATCHED = "dispatched"
    IN_PROGRESS = "in_progress"
    DONE = "done"
    CALLBACK = "callback"
    CLOSED = "closed"
    CHOICES = {
        NEW: _("New"),
        DISPATCHED: _("Dispatched"),
        IN_PROGRESS: _("In progress"),
        DONE: _("Done, awaiting callback"),
        CALLBACK: _("Called back"),
        CLOSED: _("Closed"),
    }
    OPEN = (NEW, DISPATCHED, IN_PROGRESS)
    BADGES = {NEW: "new", DISPATCHED: "warning", IN_PROGRESS: "progress", DONE: "done", CALLBACK: "done", CLOSED: "closed"}


class Level:
    """Tiered handling: answered on the spot, dispatched, or escalated to a supervisor."""

    ON_THE_SPOT = 1
    DISPATCHED = 2
    COORDINATED = 3
    CHOICES = {
        ON_THE_SPOT: _("Level 1 · on the spot"),
        DISPATCHED: _("Level 2 · dispatched"),
        COORDINATED: _("Level 3 · coordinated by a supervisor"),
    }


class Escalation:
    NONE = 0
    SUPERVISOR = 1
    MANAGER = 2
    CHOICES = {NONE: _("Not escalated"), SUPERVISOR: _("Escalated to the supervisor"), MANAGER: _("Escalated to the manager")}


class Category(ProjectScopedModel):
    """A node of the estate's request category tree (e.g. 报修 › 水电 › 漏水), with its SLA."""

    id = fields.IntField(primary_key=True)
    name = fields.CharField(max_length=64)
    parent = fields.ForeignKeyField(
        "hotline.Category", related_name="children", null=True, on_delete=fields.RESTRICT
    )
    kind = fields.CharField(max_length=16, default=Kind.REPAIR)
    # {"normal": {"response": 4, "resolution": 24}, ...} in hours; missing urgencies use DEFAULT_SLA.
    sla = fields.JSONField(default=dict)
    is_active = fields.BooleanField(default=True)

    class Meta:
        table = "hotline_category"
        unique_together = (("project", "parent", "name"),)
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class WorkOrder(ProjectScopedModel, ChangeTracked):
    """One request from a customer, numbered GD-<year>-<nnnnnn> per estate (`updated_at`: API syncs)."""

    view_permission = "hotline.view"

    id = fields.IntField(primary_key=True)
    number = fields.CharField(max_length=32)
    channel = fields.CharField(max_length=16, default=ContactChannel.PHONE)
    kind = fields.CharField(max_length=16, default=Kind.REPAIR)
    category = fields.ForeignKeyField("hotline.Category", related_name="orders", on_delete=fields.RESTRICT)
    urgency = fields.CharField(max_length=16, default=Urgency.NORMAL)
    customer = fields.ForeignKeyField("core.Customer", related_name="hotline_orders", on_delete=fields.RESTRICT)
    unit = fields.ForeignKeyField("core.Unit", related_name="hotline_orders", null=True, on_delete=fields.RESTRICT)
    caller_phone = fields.CharField(max_length=32, default="")  # E.164, as the customer called in
    subject = fields.CharField(max_length=200)
    description = fields.TextField(default="")
    status = fields.CharField(max_length=16, default=Status.NEW, db_index=True)
    level = fields.SmallIntField(default=Level.DISPATCHED)
    supervisor = fields.ForeignKeyField("core.User", related_name="hotline_supervised", null=True, on_delete=fields.RESTRICT)
    created_by = fields.ForeignKeyField("core.User", related_name="hotline_taken", null=True, on_delete=fields.RESTRICT)
    received_at = fields.DatetimeField()
    working_hours_only = fields.BooleanField(default=True)
    response_due = fields.DatetimeField()
    resolution_due = fields.DatetimeField()
    responded_at = fields.DatetimeField(null=True)
    resolved_at = fields.DatetimeField(null=True)
    closed_at = fields.DatetimeField(null=True)
    resolution = fields.TextField(default="")
    # Answered and confirmed by the customer during the first contact (level 1, FCR).
    first_contact_resolved = fields.BooleanField(default=False)
    response_warned_at = fields.DatetimeField(null=True)
    resolution_warned_at = fields.DatetimeField(null=True)
    escalation_level = fields.SmallIntField(default=Escalation.NONE)
    escalated_at = fields.DatetimeField(null=True)
    reopen_count = fields.SmallIntField(default=0)

    class Meta:
        table = "hotline_work_order"
        unique_together = (("project", "number"),)
        ordering = ["-id"]
        # The work-order list (an estate's orders, by state, newest first) reads 50 rows, not the estate's
        # every order; a customer's orders (360 page, screen pop) are found without reading the table.
        indexes = (("project_id", "status", "received_at"), ("project_id", "received_at"), ("customer_id",), ("unit_id",))

    def __str__(self) -> str:
        return self.number


class Assignment(ProjectScopedModel):
    """A piece of a work order given to a department and/or a person, with its deadline.

    Level 2 orders have one; level 3 orders one per department the supervisor coordinates.
    """

    id = fields.IntField(primary_key=True)
    order = fields.ForeignKeyField("hotline.WorkOrder", related_name="assignments", on_delete=fields.CASCADE)
    department = fields.ForeignKeyField("core.Department", related_name="hotline_assignments", null=True, on_delete=fields.RESTRICT)
    assignee = fields.ForeignKeyField("core.User", related_name="hotline_assignments", null=True, on_delete=fields.RESTRICT)
    due_at = fields.DatetimeField()
    instructions = fields.TextField(default="")
    report = fields.TextField(default="")  # what the department did
    done_at = fields.DatetimeField(null=True)
    done_by = fields.ForeignKeyField("core.User", related_name=False, null=True, on_delete=fields.RESTRICT)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "hotline_assignment"
        ordering = ["id"]
        # An order's assignments (its page), an assignee's open work (their queue): PostgreSQL
        # does not index foreign keys by itself.
        indexes = (("order_id",), ("assignee_id", "done_at"))


class Material(ProjectScopedModel):
    """Material used on a work order (a tap washer, 2 m of pipe)."""

    id = fields.IntField(primary_key=True)
    order = fields.ForeignKeyField("hotline.WorkOrder", related_name="materials", on_delete=fields.CASCADE)
    name = fields.CharField(max_length=100)
    quantity = fields.DecimalField(max_digits=10, decimal_places=2)
    unit_of_measure = fields.CharField(max_length=16, default="")
    recorded_by = fields.ForeignKeyField("core.User", related_name=False, null=True, on_delete=fields.RESTRICT)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "hotline_material"
        ordering = ["id"]


class TaskStatus:
    OPEN = "open"
    DONE = "done"
    CANCELLED = "cancelled"
    CHOICES = {OPEN: _("Open"), DONE: _("Done"), CANCELLED: _("Cancelled")}


class Outcome:
    SATISFIED = "satisfied"
    UNSATISFIED = "unsatisfied"
    REACHED = "reached"
    NOT_REACHED = "not_reached"
    CHOICES = {
        SATISFIED: _("Satisfied"),
        UNSATISFIED: _("Not satisfied"),
        REACHED: _("Reached"),
        NOT_REACHED: _("Not reached"),
    }
    VERDICTS = (SATISFIED, UNSATISFIED)


class CallbackTask(ProjectScopedModel):
    """A call to make (回访): after a work order, for a missed call, for dunning.

    `order` is empty for calls that are not about a work order; `source` names
    the asking record ("hotline.WorkOrder:12", "fees.Bill:42", "hotline.Call:7").
    """

    view_permission = "hotline.view"

    id = fields.IntField(primary_key=True)
    order = fields.ForeignKeyField("hotline.WorkOrder", related_name="callbacks", null=True, on_delete=fields.CASCADE)
    customer = fields.ForeignKeyField("core.Customer", related_name="hotline_callbacks", null=True, on_delete=fields.RESTRICT)
    unit = fields.ForeignKeyField("core.Unit", related_name="hotline_callbacks", null=True, on_delete=fields.RESTRICT)
    phone = fields.CharField(max_length=32, default="")
    reason = fields.TextField(default="")
    source = fields.CharField(max_length=64, default="")
    due_at = fields.DatetimeField(db_index=True)
    assignee = fields.ForeignKeyField("core.User", related_name="hotline_callbacks", null=True, on_delete=fields.RESTRICT)
    status = fields.CharField(max_length=16, default=TaskStatus.OPEN, db_index=True)
    attempts = fields.SmallIntField(default=0)
    outcome = fields.CharField(max_length=16, default="")
    comment = fields.TextField(default="")
    done_at = fields.DatetimeField(null=True)
    done_by = fields.ForeignKeyField("core.User", related_name=False, null=True, on_delete=fields.RESTRICT)
    reminded_at = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "hotline_callback_task"
        ordering = ["due_at", "id"]
        # An order's or a customer's callbacks (order page, 360), an agent's queue.
        indexes = (("order_id",), ("customer_id",), ("assignee_id", "status"))
