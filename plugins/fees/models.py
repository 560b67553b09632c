"""Fee collection records: fee items, rates, bills, payments, allocations and dunning.

Money is Decimal in NUMERIC(14, 2) columns; unit prices carry four decimals
(e.g. 2.3500 yuan per m² per month) and every bill line is rounded to the fen
with ROUND_HALF_UP. Periods are local months, stored as the month's first day.

A bill's `paid` is not entered by anyone: it is the sum of its allocations,
recomputed whenever an allocation is written. Posted payments are never
changed; a correction is a reversal (a payment with a negative amount that
references the original), so both stay on the books.
"""

from __future__ import annotations

from tortoise import fields

from core.api import ChangeTracked, ProjectScopedModel, lazy_gettext as _


class Basis:
    """How a fee item's quantity is found for a unit."""

    AREA = "area"  # unit area in m² × price per m² per month
    FLAT = "flat"  # one per month (parking space, garbage)
    METERED = "metered"  # an amount entered per unit and month (utility pass-through)
    CHOICES = {
        AREA: _("Per m² per month"),
        FLAT: _("Flat per month"),
        METERED: _("Entered per unit (pass-through)"),
    }


class FeeItem(ProjectScopedModel):
    """Something an estate charges for: property fee, parking, garbage, water and power."""

    id = fields.IntField(primary_key=True)
    code = fields.CharField(max_length=32)
    name = fields.CharField(max_length=64)
    basis = fields.CharField(max_length=16, default=Basis.AREA)
    is_active = fields.BooleanField(default=True)
    order = fields.SmallIntField(default=0)

    class Meta:
        table = "fees_fee_item"
        unique_together = (("project", "code"),)
        ordering = ["order", "id"]

    def __str__(self) -> str:
        return self.name


class FeeRate(ProjectScopedModel):
    """The price of a fee item for units of one use, valid from a date until a date (inclusive)."""

    id = fields.IntField(primary_key=True)
    item = fields.ForeignKeyField("fees.FeeItem", related_name="rates", on_delete=fields.RESTRICT)
    use = fields.CharField(max_length=16)
    price = fields.DecimalField(max_digits=14, decimal_places=4)
    valid_from = fields.DateField()
    valid_to = fields.DateField(null=True)  # open-ended when empty
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "fees_fee_rate"
        ordering = ["item_id", "use", "valid_from"]


class UnitItemExclusion(ProjectScopedModel):
    """An item a unit is not charged although its use would be (e.g. a flat with no garbage service)."""

    id = fields.IntField(primary_key=True)
    unit = fields.ForeignKeyField("core.Unit", related_name=False, on_delete=fields.CASCADE)
    item = fields.ForeignKeyField("fees.FeeItem", related_name=False, on_delete=fields.CASCADE)
    reason = fields.CharField(max_length=255, default="")
    created_by = fields.ForeignKeyField("core.User", related_name=False, null=True, on_delete=fields.RESTRICT)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "fees_unit_item_exclusion"
        unique_together = (("unit", "item"),)


class BillTo:
    OWNER = "owner"
    TENANT = "tenant"
    CHOICES = {OWNER: _("Owner"), TENANT: _("Tenant")}


class UnitBilling(ProjectScopedModel):
    """Per-unit billing settings: whom the unit's bills go to, and who chose it when."""

    id = fields.IntField(primary_key=True)
    unit = fields.OneToOneField("core.Unit", related_name=False, on_delete=fields.CASCADE)
    bill_to = fields.CharField(max_length=16, default=BillTo.OWNER)
    changed_by = fields.ForeignKeyField("core.User", related_name=False, null=True, on_delete=fields.RESTRICT)
    changed_at = fields.DatetimeField(null=True)

    class Meta:
        table = "fees_unit_billing"


class Discount(ProjectScopedModel):
    """A discount or exemption (100 %) for a unit, approved by a manager, with its reason."""

    id = fields.IntField(primary_key=True)
    unit = fields.ForeignKeyField("core.Unit", related_name=False, on_delete=fields.CASCADE)
    item = fields.ForeignKeyField("fees.FeeItem", related_name=False, null=True, on_delete=fields.CASCADE)
    percent = fields.DecimalField(max_digits=5, decimal_places=2)  # 100 = exempt
    valid_from = fields.DateField()
    valid_to = fields.DateField(null=True)
    reason = fields.CharField(max_length=255)
    approved_by = fields.ForeignKeyField("core.User", related_name=False, on_delete=fields.RESTRICT)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "fees_discount"
        ordering = ["-id"]
        indexes = (("unit_id",),)


class MeterCharge(ProjectScopedModel):
    """A pass-through amount for one unit, item and month (water, power read from the meter)."""

    id = fields.IntField(primary_key=True)
    unit = fields.ForeignKeyField("core.Unit", related_name=False, on_delete=fields.CASCADE)
    item = fields.ForeignKeyField("fees.FeeItem", related_name=False, on_delete=fields.RESTRICT)
    period = fields.DateField()
    amount = fields.DecimalField(max_digits=14, decimal_places=2)
    note = fields.CharField(max_length=255, default="")
    created_by = fields.ForeignKeyField("core.User", related_name=False, null=True, on_delete=fields.RESTRICT)
    created_at = fields.DatetimeField(auto_now_add=True)
    # The last change of the amount (a corrected entry or a re-imported file), and by whom.
    updated_by = fields.ForeignKeyField("core.User", related_name=False, null=True, on_delete=fields.RESTRICT)
    updated_at = fields.DatetimeField(null=True)

    class Meta:
        table = "fees_meter_charge"
        unique_together = (("unit", "item", "period"),)


class MeterImportState:
    INVALID = "invalid"
    READY = "ready"
    DONE = "done"
    CHOICES = {INVALID: _("Has errors"), READY: _("Ready to import"), DONE: _("Imported")}


class MeterImport(ProjectScopedModel):
    """An uploaded file of pass-through amounts: its checked rows, the error report, what the import wrote.

    Rows are kept checked but unwritten until someone confirms; the import then
    writes all of them in one transaction or none.
    """

    id = fields.IntField(primary_key=True)
    filename = fields.CharField(max_length=255)
    state = fields.CharField(max_length=16, default=MeterImportState.INVALID)
    rows = fields.JSONField(default=list)  # [[row number, unit id, item id, "2026-05-01", "36.40", note], ...]
    total = fields.IntField(default=0)
    amount = fields.DecimalField(max_digits=14, decimal_places=2, default=0)
    errors = fields.JSONField(default=list)  # [{"row": 5, "column": "Amount", "message": "..."}]
    error_count = fields.IntField(default=0)
    preview = fields.JSONField(default=list)  # the first rows as shown: [[unit code, item, month, amount, note, change]]
    summary = fields.JSONField(default=dict)  # {"created": n, "updated": n, "unchanged": n}
    created_by = fields.ForeignKeyField("core.User", related_name=False, null=True, on_delete=fields.RESTRICT)
    created_at = fields.DatetimeField()
    imported_at = fields.DatetimeField(null=True)

    class Meta:
        table = "fees_meter_import"
        ordering = ["-id"]


class BillRunState:
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CHOICES = {QUEUED: _("Queued"), RUNNING: _("Running"), DONE: _("Done"), FAILED: _("Failed")}


class BillRun(ProjectScopedModel):
    """The bill run of one period: its progress and where to resume (last unit id done)."""

    id = fields.IntField(primary_key=True)
    period = fields.DateField()
    state = fields.CharField(max_length=16, default=BillRunState.QUEUED)
    units_done = fields.IntField(default=0)
    units_total = fields.IntField(default=0)
    last_unit_id = fields.IntField(default=0)
    bills_created = fields.IntField(default=0)
    error = fields.TextField(default="")
    requested_by = fields.ForeignKeyField("core.User", related_name=False, null=True, on_delete=fields.SET_NULL)
    created_at = fields.DatetimeField()
    started_at = fields.DatetimeField(null=True)
    finished_at = fields.DatetimeField(null=True)

    class Meta:
        table = "fees_bill_run"
        unique_together = (("project", "period"),)
        ordering = ["-period"]

    @property
    def percent(self) -> int:
        return min(100, self.units_done * 100 // self.units_total) if self.units_total else 0


class BillStatus:
    OPEN = "open"
    PAID = "paid"
    VOID = "void"
    CHOICES = {OPEN: _("Open"), PAID: _("Paid"), VOID: _("Void")}


class Bill(ProjectScopedModel, ChangeTracked):
    """One unit's bill for one month: one per unit and period, enforced by the database (`updated_at`: API syncs).

    Bills are inserted in bulk by the bill run, which sets `updated_at` itself
    (`QuerySet.update()` sets it through `ChangeTracked`).
    """

    view_permission = "fees.view"

    id = fields.IntField(primary_key=True)
    number = fields.CharField(max_length=32)
    unit = fields.ForeignKeyField("core.Unit", related_name=False, on_delete=fields.RESTRICT)
    customer = fields.ForeignKeyField("core.Customer", related_name=False, null=True, on_delete=fields.RESTRICT)
    # How the customer was billed: "owner" or "tenant" (the unit's choice when the bill was issued).
    customer_relation = fields.CharField(max_length=16, default="", db_default="")
    period = fields.DateField()
    due_date = fields.DateField()
    total = fields.DecimalField(max_digits=14, decimal_places=2, default=0)
    paid = fields.DecimalField(max_digits=14, decimal_places=2, default=0)
    status = fields.CharField(max_length=16, default=BillStatus.OPEN, db_index=True)
    void_reason = fields.CharField(max_length=255, default="")
    issued_at = fields.DatetimeField()

    class Meta:
        table = "fees_bill"
        unique_together = (("unit", "period"), ("project", "number"))
        indexes = (("customer_id",), ("project_id", "period"))
        ordering = ["-period", "id"]

    def __str__(self) -> str:
        return self.number

    @property
    def balance(self):
        return self.total - self.paid


class BillLine(ProjectScopedModel):
    """One fee item on a bill: amount = quantity × price − discount, rounded half-up to the fen."""

    id = fields.IntField(primary_key=True)
    bill = fields.ForeignKeyField("fees.Bill", related_name="lines", on_delete=fields.CASCADE)
    # Project, unit and period are repeated from the bill so the database itself refuses a second
    # line for the same month. The bill's own foreign keys vouch for them: checking them again for
    # every line would only slow the bill run down (a bill run writes ~2 lines per unit).
    project = fields.ForeignKeyField("core.Project", related_name=False, on_delete=fields.RESTRICT, db_constraint=False)
    unit = fields.ForeignKeyField("core.Unit", related_name=False, on_delete=fields.RESTRICT, db_constraint=False)
    item = fields.ForeignKeyField("fees.FeeItem", related_name=False, on_delete=fields.RESTRICT)
    period = fields.DateField()
    description = fields.CharField(max_length=255, default="")
    quantity = fields.DecimalField(max_digits=12, decimal_places=2)
    unit_price = fields.DecimalField(max_digits=14, decimal_places=4)
    gross = fields.DecimalField(max_digits=14, decimal_places=2)
    discount = fields.DecimalField(max_digits=14, decimal_places=2, default=0)
    amount = fields.DecimalField(max_digits=14, decimal_places=2)

    class Meta:
        table = "fees_bill_line"
        unique_together = (("unit", "item", "period"),)
        indexes = (("bill_id",),)
        ordering = ["id"]


class Method:
    CASH = "cash"
    TRANSFER = "transfer"
    CARD = "card"
    ONLINE = "online"
    CHOICES = {CASH: _("Cash"), TRANSFER: _("Bank transfer"), CARD: _("Card"), ONLINE: _("Online")}


class PaymentKind:
    PAYMENT = "payment"
    REVERSAL = "reversal"
    CHOICES = {PAYMENT: _("Payment"), REVERSAL: _("Reversal")}


class Payment(ProjectScopedModel, ChangeTracked):
    """Money received for a unit's account, with its receipt number. Never edited once posted.

    Its `updated_at` (API syncs) still moves when it is reversed or when its
    credit is allocated to later bills: what the API shows of it changed.

    A reversal is a Payment of kind "reversal" with the negative amount of the
    payment it `reverses`, and both stay. What a payment has not allocated to bills
    is credit on the unit's account, used by later bills.
    """

    view_permission = "fees.view"

    id = fields.IntField(primary_key=True)
    receipt_number = fields.CharField(max_length=32)
    kind = fields.CharField(max_length=16, default=PaymentKind.PAYMENT)
    unit = fields.ForeignKeyField("core.Unit", related_name=False, on_delete=fields.RESTRICT)
    customer = fields.ForeignKeyField("core.Customer", related_name=False, null=True, on_delete=fields.RESTRICT)
    amount = fields.DecimalField(max_digits=14, decimal_places=2)
    method = fields.CharField(max_length=16)
    reference = fields.CharField(max_length=64, default="")
    payer = fields.CharField(max_length=64, default="")
    reverses = fields.OneToOneField(
        "fees.Payment", related_name="reversal", null=True, on_delete=fields.RESTRICT
    )
    reason = fields.CharField(max_length=255, default="")
    cashier = fields.ForeignKeyField("core.User", related_name=False, on_delete=fields.RESTRICT)
    approved_by = fields.ForeignKeyField("core.User", related_name=False, null=True, on_delete=fields.RESTRICT)
    # From a hidden field of the payment form: a second submission of the same form is refused by the database.
    idempotency_key = fields.CharField(max_length=64, unique=True)
    received_at = fields.DatetimeField()

    class Meta:
        table = "fees_payment"
        unique_together = (("project", "receipt_number"),)
        indexes = (("unit_id",), ("customer_id",))
        ordering = ["-id"]

    def __str__(self) -> str:
        return self.receipt_number


class Allocation(ProjectScopedModel):
    """Part of a payment applied to a bill (negative for a reversal's)."""

    id = fields.IntField(primary_key=True)
    payment = fields.ForeignKeyField("fees.Payment", related_name="allocations", on_delete=fields.RESTRICT)
    bill = fields.ForeignKeyField("fees.Bill", related_name="allocations", on_delete=fields.RESTRICT)
    unit = fields.ForeignKeyField("core.Unit", related_name=False, on_delete=fields.RESTRICT)
    amount = fields.DecimalField(max_digits=14, decimal_places=2)
    created_at = fields.DatetimeField()

    class Meta:
        table = "fees_allocation"
        ordering = ["id"]
        indexes = (("unit_id",), ("bill_id",), ("payment_id",))


class CreditHint(ProjectScopedModel):
    """A unit that may have money not yet allocated to bills (credit): the bill run looks only at these.

    Written when a payment leaves money over, removed once the unit's credit is
    used up. A unit listed without credit costs one small query; a unit with
    credit but not listed would keep it unused, so every path that leaves money
    over writes one.
    """

    id = fields.IntField(primary_key=True)
    unit = fields.OneToOneField("core.Unit", related_name=False, on_delete=fields.CASCADE)

    class Meta:
        table = "fees_credit_hint"


class DunningAction:
    EMAIL = "email"
    LETTER = "letter"
    CALL = "call"
    REVIEW = "review"
    CHOICES = {
        EMAIL: _("Reminder email"),
        LETTER: _("Printable letter"),
        CALL: _("Call task"),
        REVIEW: _("Manager review"),
    }


class DunningStep(ProjectScopedModel):
    """A step of the estate's dunning (催缴) ladder, due a number of days after a bill's due date."""

    id = fields.IntField(primary_key=True)
    name = fields.CharField(max_length=64)
    days_overdue = fields.IntField()
    action = fields.CharField(max_length=16)
    is_active = fields.BooleanField(default=True)

    class Meta:
        table = "fees_dunning_step"
        unique_together = (("project", "days_overdue", "action"),)
        ordering = ["days_overdue", "id"]

    def __str__(self) -> str:
        return self.name


class DunningRecord(ProjectScopedModel):
    """A dunning step applied to a bill: once per bill and step, enforced by the database."""

    id = fields.IntField(primary_key=True)
    bill = fields.ForeignKeyField("fees.Bill", related_name="dunning", on_delete=fields.CASCADE)
    step = fields.ForeignKeyField("fees.DunningStep", related_name=False, on_delete=fields.RESTRICT)
    action = fields.CharField(max_length=16)
    balance = fields.DecimalField(max_digits=14, decimal_places=2)
    detail = fields.CharField(max_length=255, default="")
    applied_at = fields.DatetimeField()

    class Meta:
        table = "fees_dunning_record"
        unique_together = (("bill", "step"),)
        ordering = ["-id"]


class PromiseToPay(ProjectScopedModel):
    """The customer promised to pay by a date: dunning for the unit pauses until then."""

    id = fields.IntField(primary_key=True)
    unit = fields.ForeignKeyField("core.Unit", related_name=False, on_delete=fields.CASCADE)
    promised_date = fields.DateField()
    amount = fields.DecimalField(max_digits=14, decimal_places=2, null=True)
    note = fields.CharField(max_length=255, default="")
    created_by = fields.ForeignKeyField("core.User", related_name=False, null=True, on_delete=fields.RESTRICT)
    created_at = fields.DatetimeField()

    class Meta:
        table = "fees_promise_to_pay"
        ordering = ["-promised_date", "-id"]
        indexes = (("unit_id",),)


class CollectionSnapshot(ProjectScopedModel):
    """The estate's collection figures as of one local day (daily job), for the dashboard trend."""

    id = fields.IntField(primary_key=True)
    day = fields.DateField()
    billed = fields.DecimalField(max_digits=14, decimal_places=2)
    collected = fields.DecimalField(max_digits=14, decimal_places=2)
    arrears = fields.DecimalField(max_digits=14, decimal_places=2)
    buckets = fields.JSONField(default=dict)  # ageing bucket -> amount (as text)
    taken_at = fields.DatetimeField()

    class Meta:
        table = "fees_collection_snapshot"
        unique_together = (("project", "day"),)
        ordering = ["-day"]
