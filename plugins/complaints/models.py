"""Complaint cases (投诉), their categories, links between repeats and satisfaction surveys.

Tables are prefixed `complaints_`. Every record belongs to one estate. The
eleven-step procedure lives in `plugins.complaints.cases`; the models only
hold the facts each step records.
"""

from __future__ import annotations

from tortoise import fields

from core.api import ChangeTracked, ProjectScopedModel, lazy_gettext as _


class Classification:
    """The top-level classes of complaints; an estate's categories each belong to one."""

    SERVICE_ATTITUDE = "service_attitude"
    PRODUCT_QUALITY = "product_quality"
    DELIVERY_DELAY = "delivery_delay"
    PROPERTY_SERVICES = "property_services"
    OTHER = "other"
    CHOICES = {
        SERVICE_ATTITUDE: _("Service attitude"),
        PRODUCT_QUALITY: _("Product quality"),
        DELIVERY_DELAY: _("Delivery delay"),
        PROPERTY_SERVICES: _("Property services"),
        OTHER: _("Other"),
    }


class DefectType:
    """Product defects head office compares across estates (缺陷反馈), whatever each estate calls its categories."""

    CRACK = "crack"
    LEAK = "leak"
    HOLLOW = "hollow"
    DAMP = "damp"
    WINDOW_DOOR = "window_door"
    PLUMBING = "plumbing"
    ELECTRICAL = "electrical"
    FINISH = "finish"
    NOISE = "noise"
    LAYOUT = "layout"
    CHOICES = {
        CRACK: _("Cracks"),
        LEAK: _("Leaks and seepage"),
        HOLLOW: _("Hollow plaster or tiles"),
        DAMP: _("Damp and mould"),
        WINDOW_DOOR: _("Windows and doors"),
        PLUMBING: _("Plumbing and drains"),
        ELECTRICAL: _("Electrical"),
        FINISH: _("Finishes (paint, flooring)"),
        NOISE: _("Noise and insulation"),
        LAYOUT: _("Layout differs from the contract"),
    }


class Severity:
    MINOR = "minor"
    NORMAL = "normal"
    SERIOUS = "serious"
    CRITICAL = "critical"
    CHOICES = {MINOR: _("Minor"), NORMAL: _("Normal"), SERIOUS: _("Serious"), CRITICAL: _("Critical")}
    BADGES = {MINOR: "muted", NORMAL: "", SERIOUS: "warning", CRITICAL: "danger"}


class Channel:
    PHONE = "phone"
    VISIT = "visit"
    ONLINE = "online"
    EMAIL = "email"
    LETTER = "letter"
    CHOICES = {
        PHONE: _("Phone"), VISIT: _("Visit"), ONLINE: _("Online / WeChat"), EMAIL: _("Email"), LETTER: _("Letter"),
    }


class Step:
    """The eleven steps of the complaint procedure; a case's `step` is the last one completed."""

    RECEIVED = "received"
    RECORDED = "recorded"
    ASSESSED = "assessed"
    INFORMED = "informed"
    INVESTIGATED = "investigated"
    ANALYSED = "analysed"
    PROPOSED = "proposed"
    AGREED = "agreed"
    IMPLEMENTED = "implemented"
    FOLLOWED_UP = "followed_up"
    CLOSED = "closed"
    ORDER = [RECEIVED, RECORDED, ASSESSED, INFORMED, INVESTIGATED, ANALYSED, PROPOSED, AGREED, IMPLEMENTED, FOLLOWED_UP, CLOSED]
    # What the step's form is called (the action that completes it).
    ACTIONS = {
        RECEIVED: _("Receive the complaint"),
        RECORDED: _("Record the details"),
        ASSESSED: _("Assess and assign"),
        INFORMED: _("Tell the customer when to expect a reply"),
        INVESTIGATED: _("Investigate the facts"),
        ANALYSED: _("Root cause and responsible party"),
        PROPOSED: _("Propose a solution"),
        AGREED: _("Customer's opinion"),
        IMPLEMENTED: _("Implement the solution"),
        FOLLOWED_UP: _("Follow up with the customer"),
        CLOSED: _("Close with a summary"),
    }
    # Where the case stands once the step is done.
    CHOICES = {
        RECEIVED: _("Received"),
        RECORDED: _("Recorded"),
        ASSESSED: _("Assessed"),
        INFORMED: _("Customer informed"),
        INVESTIGATED: _("Investigated"),
        ANALYSED: _("Cause analysed"),
        PROPOSED: _("Solution proposed"),
        AGREED: _("Solution accepted"),
        IMPLEMENTED: _("Implemented"),
        FOLLOWED_UP: _("Followed up"),
        CLOSED: _("Closed"),
    }
    BADGES = {CLOSED: "closed", RECEIVED: "new", FOLLOWED_UP: "done", AGREED: "progress", IMPLEMENTED: "done"}
    OPEN = tuple(ORDER[:-1])


class RootCause:
    DESIGN = "design"
    CONSTRUCTION = "construction"
    MATERIAL = "material"
    SERVICE = "service"
    MANAGEMENT = "management"
    THIRD_PARTY = "third_party"
    MISUNDERSTANDING = "misunderstanding"
    OTHER = "other"
    CHOICES = {
        DESIGN: _("Design"),
        CONSTRUCTION: _("Construction workmanship"),
        MATERIAL: _("Materials or equipment"),
        SERVICE: _("Staff service"),
        MANAGEMENT: _("Management or procedure"),
        THIRD_PARTY: _("Third party (utility, neighbour)"),
        MISUNDERSTANDING: _("Misunderstanding, no fault found"),
        OTHER: _("Other"),
    }


class Party:
    """Who is responsible for the cause."""

    DEVELOPER = "developer"
    CONTRACTOR = "contractor"
    PROPERTY = "property"
    SUPPLIER = "supplier"
    SALES = "sales"
    CUSTOMER = "customer"
    OTHER = "other"
    CHOICES = {
        DEVELOPER: _("Developer"),
        CONTRACTOR: _("Construction contractor"),
        PROPERTY: _("Property management"),
        SUPPLIER: _("Supplier"),
        SALES: _("Sales"),
        CUSTOMER: _("Customer"),
        OTHER: _("Other"),
    }


class Escalation:
    """Who has been told that a case is overdue, level by level."""

    HANDLER = 0
    SUPERVISOR = 1
    MANAGER = 2
    HEAD_OFFICE = 3
    CHOICES = {
        HANDLER: _("Handler"),
        SUPERVISOR: _("Escalated to the supervisor"),
        MANAGER: _("Escalated to the manager"),
        HEAD_OFFICE: _("Escalated to head office"),
    }


class Category(ProjectScopedModel):
    """A complaint category of an estate, in a tree maintained by its administrators."""

    id = fields.IntField(primary_key=True)
    name = fields.CharField(max_length=64)
    parent = fields.ForeignKeyField("complaints.Category", related_name="children", null=True, on_delete=fields.RESTRICT)
    classification = fields.CharField(max_length=32, default=Classification.OTHER)
    # A product defect reported to head office; empty for service matters.
    defect = fields.CharField(max_length=32, default="")
    is_active = fields.BooleanField(default=True)

    class Meta:
        table = "complaints_category"
        unique_together = (("project", "name"),)
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Case(ProjectScopedModel, ChangeTracked):
    """A complaint case (投诉单), from receipt to the summary at closing."""

    view_permission = "complaints.view"

    id = fields.IntField(primary_key=True)
    number = fields.CharField(max_length=32, db_index=True)
    customer = fields.ForeignKeyField("core.Customer", related_name="complaint_cases", on_delete=fields.RESTRICT)
    unit = fields.ForeignKeyField("core.Unit", related_name="complaint_cases", null=True, on_delete=fields.RESTRICT)
    channel = fields.CharField(max_length=16, default=Channel.PHONE)
    category = fields.ForeignKeyField("complaints.Category", related_name="cases", null=True, on_delete=fields.RESTRICT)
    severity = fields.CharField(max_length=16, default=Severity.NORMAL)
    subject = fields.CharField(max_length=200)
    description = fields.TextField(default="")
    step = fields.CharField(max_length=16, default=Step.RECEIVED, db_index=True)
    # The hotline work order it came from, when it did (no foreign key: plugins stay apart).
    work_order_id = fields.IntField(null=True, db_index=True)
    work_order_number = fields.CharField(max_length=32, default="")

    received_at = fields.DatetimeField()
    received_by = fields.ForeignKeyField("core.User", related_name=False, null=True, on_delete=fields.RESTRICT)
    occurred_at = fields.DatetimeField(null=True)
    contact = fields.CharField(max_length=120, default="")

    # Assignment: who handles the case, and by when it must be settled.
    department = fields.ForeignKeyField("core.Department", related_name=False, null=True, on_delete=fields.SET_NULL)
    assignee = fields.ForeignKeyField("core.User", related_name=False, null=True, on_delete=fields.RESTRICT)
    due_at = fields.DatetimeField(null=True)
    step_due_at = fields.DatetimeField(null=True)
    warned_at = fields.DatetimeField(null=True)
    escalation_level = fields.SmallIntField(default=Escalation.HANDLER)
    escalated_at = fields.DatetimeField(null=True)

    promised_reply_at = fields.DatetimeField(null=True)
    facts = fields.TextField(default="")
    interviews = fields.TextField(default="")
    root_cause = fields.CharField(max_length=32, default="")
    cause_detail = fields.TextField(default="")
    responsible_party = fields.CharField(max_length=32, default="")
    responsible_name = fields.CharField(max_length=120, default="")
    solution = fields.TextField(default="")
    compensation = fields.DecimalField(max_digits=14, decimal_places=2, null=True)
    solution_rounds = fields.SmallIntField(default=0)
    customer_opinion = fields.TextField(default="")
    implementation = fields.TextField(default="")
    follow_up = fields.TextField(default="")
    summary = fields.TextField(default="")
    closed_at = fields.DatetimeField(null=True, db_index=True)
    closed_by = fields.ForeignKeyField("core.User", related_name=False, null=True, on_delete=fields.RESTRICT)

    is_repeat = fields.BooleanField(default=False)
    # A low survey score sends the closed case back for a manager's review.
    needs_review = fields.BooleanField(default=False)
    reopen_count = fields.SmallIntField(default=0)
    step_at = fields.DatetimeField()

    class Meta:
        table = "complaints_case"
        unique_together = (("project", "number"),)
        ordering = ["-id"]

    def __str__(self) -> str:
        return self.number

    @property
    def is_open(self) -> bool:
        return self.step != Step.CLOSED


class CaseLink(ProjectScopedModel):
    """A repeat: `case` came after `earlier` from the same unit or in the same defect category."""

    id = fields.IntField(primary_key=True)
    case = fields.ForeignKeyField("complaints.Case", related_name="earlier_links", on_delete=fields.CASCADE)
    earlier = fields.ForeignKeyField("complaints.Case", related_name="later_links", on_delete=fields.CASCADE)
    same_unit = fields.BooleanField(default=False)
    same_defect = fields.BooleanField(default=False)

    class Meta:
        table = "complaints_case_link"
        unique_together = (("case", "earlier"),)


class Survey(ProjectScopedModel):
    """The satisfaction survey sent after a case closed, and the customer's answer."""

    id = fields.IntField(primary_key=True)
    case = fields.ForeignKeyField("complaints.Case", related_name="surveys", on_delete=fields.CASCADE)
    email = fields.CharField(max_length=255)
    sent_at = fields.DatetimeField()
    expires_at = fields.DatetimeField()
    answered_at = fields.DatetimeField(null=True)
    score = fields.SmallIntField(null=True)
    comment = fields.TextField(default="")

    class Meta:
        table = "complaints_survey"
        ordering = ["-id"]
