"""Core data: estates, buildings, units, customers, departments, staff and modules.

Every table is prefixed `core_`. Records belonging to one estate derive from
`ProjectScopedModel` and are filtered by the current scope automatically.
Money is Decimal in NUMERIC columns; datetimes are aware, stored in UTC.
"""

from __future__ import annotations

from tortoise import fields
from tortoise.models import Model
from tortoise.queryset import QuerySet

from core.i18n import lazy_gettext as _
from core.scope import ProjectScopedModel, ScopedManager


class ChangeTrackedQuerySet(QuerySet):
    def update(self, **kwargs):
        """`QuerySet.update()` bypasses `save()`: the change's time is set here, unless given."""
        from core.clock import now

        kwargs.setdefault("updated_at", now())
        return super().update(**kwargs)


class ChangeTracked(Model):
    """Mixin for records synced by integrations: `updated_at` is set (core's clock) on every `save()`
    and every `QuerySet.update()` of them.

    `class WorkOrder(ProjectScopedModel, ChangeTracked)`. The JSON API's lists
    (`core.api.paginate`) walk such records in order of change, so
    `updated_since` finds every record changed since the last sync. Only bulk
    inserts (`bulk_create`, raw SQL) set `updated_at` themselves; `Model.filter(...).update()`
    with no fields marks the records changed.
    """

    queryset_class = ChangeTrackedQuerySet

    updated_at = fields.DatetimeField(null=True, db_index=True)

    class Meta:
        abstract = True

    async def save(self, *args, **kwargs) -> None:
        from core.clock import now

        self.updated_at = now()
        kwargs.update(zip(("using_db", "update_fields", "force_create", "force_update"), args))
        args = ()
        if kwargs.get("update_fields") is not None:
            kwargs["update_fields"] = [*(f for f in kwargs["update_fields"] if f != "updated_at"), "updated_at"]
        await super().save(*args, **kwargs)


class Phase:
    PRESALE = "presale"
    HANDOVER = "handover"
    OCCUPIED = "occupied"
    CHOICES = {PRESALE: _("Pre-sale"), HANDOVER: _("Handover"), OCCUPIED: _("Occupied")}


class UnitUse:
    RESIDENTIAL = "residential"
    COMMERCIAL = "commercial"
    PARKING = "parking"
    CHOICES = {RESIDENTIAL: _("Residential"), COMMERCIAL: _("Commercial"), PARKING: _("Parking")}


class Relation:
    OWNER = "owner"
    TENANT = "tenant"
    FAMILY = "family"
    CHOICES = {OWNER: _("Owner"), TENANT: _("Tenant"), FAMILY: _("Family member")}


class Channel:
    PHONE = "phone"
    SMS = "sms"
    EMAIL = "email"
    WECHAT = "wechat"
    VISIT = "visit"
    CHOICES = {PHONE: _("Phone"), SMS: _("SMS"), EMAIL: _("Email"), WECHAT: _("WeChat"), VISIT: _("Visit")}


class Project(Model):
    """An estate (楼盘/小区)."""

    id = fields.IntField(primary_key=True)
    code = fields.CharField(max_length=32, unique=True)
    name = fields.CharField(max_length=120)
    address = fields.CharField(max_length=255, default="")
    phase = fields.CharField(max_length=16, default=Phase.OCCUPIED)
    timezone = fields.CharField(max_length=64, default="Asia/Shanghai")
    theme = fields.CharField(max_length=64, default="default")
    # Working calendar of the SLA clock: hours, lunch break, extra closed/open days.
    calendar = fields.JSONField(default=dict)
    is_active = fields.BooleanField(default=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "core_project"
        ordering = ["code"]
        manager = ScopedManager(field="id")

    def __str__(self) -> str:
        return self.name


class AccessStamp(Model):
    """One row whose `value` moves with every change to estates, modules, roles or memberships.

    Database triggers move it (migration core 0008), so every writer counts; app
    processes compare it to decide whether their `core.directory` is current.
    """

    id = fields.IntField(primary_key=True)
    value = fields.BigIntField(default=0)

    class Meta:
        table = "core_access_stamp"


class ProjectModule(Model):
    """Which modules an estate has enabled. Read per request, so changes apply at once."""

    id = fields.IntField(primary_key=True)
    project = fields.ForeignKeyField("core.Project", related_name="modules", on_delete=fields.CASCADE)
    module = fields.CharField(max_length=64)
    enabled = fields.BooleanField(default=True)
    changed_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "core_project_module"
        unique_together = (("project", "module"),)


class Building(ProjectScopedModel):
    """A building (楼栋) of an estate."""

    id = fields.IntField(primary_key=True)
    code = fields.CharField(max_length=16)
    name = fields.CharField(max_length=64)
    floors = fields.SmallIntField(default=0)

    class Meta:
        table = "core_building"
        unique_together = (("project", "code"),)
        ordering = ["code"]

    def __str__(self) -> str:
        return self.name


class Unit(ProjectScopedModel):
    """A unit (房号) with a human code building-entrance-room, e.g. `3-2-1502`."""

    id = fields.IntField(primary_key=True)
    building = fields.ForeignKeyField("core.Building", related_name="units", on_delete=fields.RESTRICT)
    code = fields.CharField(max_length=32)
    floor = fields.SmallIntField(default=0)
    area = fields.DecimalField(max_digits=10, decimal_places=2, default=0)
    use = fields.CharField(max_length=16, default=UnitUse.RESIDENTIAL)
    layout = fields.CharField(max_length=32, default="")  # unit type, e.g. "3室2厅", picks checklists

    class Meta:
        table = "core_unit"
        unique_together = (("project", "code"),)
        ordering = ["code"]

    def __str__(self) -> str:
        return self.code


class Customer(ProjectScopedModel):
    """An owner, resident or member (客户/业主/住户) of one estate."""

    id = fields.IntField(primary_key=True)
    name = fields.CharField(max_length=64)
    # Search keys derived from the name: full pinyin ("zhangsan") and initials ("zs").
    name_pinyin = fields.CharField(max_length=255, default="", db_index=True)
    name_initials = fields.CharField(max_length=64, default="", db_index=True)
    email = fields.CharField(max_length=255, default="")
    preferred_channel = fields.CharField(max_length=16, default=Channel.PHONE)
    locale = fields.CharField(max_length=16, default="zh_CN")
    id_number = fields.CharField(max_length=32, default="")  # masked unless `core.view_personal_data`
    note = fields.TextField(default="")
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "core_customer"
        ordering = ["id"]
        # An estate's customer list (sorted by name) and name lookups without reading every estate's customers.
        indexes = (("project_id", "name"),)

    def __str__(self) -> str:
        return self.name


class CustomerPhone(ProjectScopedModel):
    """A phone number of a customer, stored normalised (E.164) so spellings match."""

    id = fields.IntField(primary_key=True)
    customer = fields.ForeignKeyField("core.Customer", related_name="phones", on_delete=fields.CASCADE)
    number = fields.CharField(max_length=32, db_index=True)  # E.164, e.g. +8613800138000
    # The number's digits backwards ("0008310083168"): "ends with 8000" becomes a prefix, which an index answers.
    number_reversed = fields.CharField(max_length=32, default="", db_default="", db_index=True)
    label = fields.CharField(max_length=32, default="")

    class Meta:
        table = "core_customer_phone"
        unique_together = (("customer", "number"),)

    async def save(self, *args, **kwargs) -> None:
        self.number_reversed = reversed_digits(self.number)
        update_fields = kwargs.get("update_fields")
        if update_fields is not None and "number" in update_fields and "number_reversed" not in update_fields:
            kwargs["update_fields"] = [*update_fields, "number_reversed"]
        await super().save(*args, **kwargs)


def reversed_digits(number: str) -> str:
    """`+8613800138000` -> `0008310083168` (CustomerPhone.number_reversed)."""
    return "".join(ch for ch in number or "" if ch.isdigit())[::-1]


class CustomerUnit(ProjectScopedModel):
    """A customer's relation to a unit: owner, tenant or family member, with dates."""

    id = fields.IntField(primary_key=True)
    customer = fields.ForeignKeyField("core.Customer", related_name="unit_links", on_delete=fields.CASCADE)
    unit = fields.ForeignKeyField("core.Unit", related_name="customer_links", on_delete=fields.CASCADE)
    relation = fields.CharField(max_length=16, default=Relation.OWNER)
    start_date = fields.DateField(null=True)
    end_date = fields.DateField(null=True)

    class Meta:
        table = "core_customer_unit"
        unique_together = (("customer", "unit", "relation"),)
        indexes = (("unit_id",),)  # a unit's owners and residents (unit pages, bill runs)


class Department(ProjectScopedModel):
    """A department of an estate: engineering, cleaning, security, finance, or a contractor."""

    id = fields.IntField(primary_key=True)
    name = fields.CharField(max_length=64)
    kind = fields.CharField(max_length=32, default="service")
    email = fields.CharField(max_length=255, default="")

    class Meta:
        table = "core_department"
        unique_together = (("project", "name"),)
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Sequence(Model):
    """Gapless number sequences (work orders, receipts) per project and key.

    Incremented with a row lock inside the caller's transaction, so a rolled
    back change gives its number back and concurrent callers never share one.
    """

    id = fields.IntField(primary_key=True)
    project = fields.ForeignKeyField("core.Project", related_name=False, null=True, on_delete=fields.CASCADE)
    key = fields.CharField(max_length=64)
    last_value = fields.BigIntField(default=0)

    class Meta:
        table = "core_sequence"
        unique_together = (("project", "key"),)

    @classmethod
    async def take(cls, project_id: int, key: str, count: int = 1) -> int:
        """Reserve the next `count` numbers of (project, key); returns the last one reserved.

        Call it inside the transaction of the change that uses the numbers
        (`async with transaction():`). The UPDATE locks the row until that
        transaction ends, so concurrent callers wait and never share a number,
        and a rollback gives the numbers back: the sequence has no gaps.
        """
        from tortoise.exceptions import IntegrityError
        from tortoise.expressions import F
        from tortoise.transactions import in_transaction

        if not await cls.filter(project_id=project_id, key=key).exists():
            try:
                async with in_transaction("default"):  # a savepoint: losing the race to create it is harmless
                    await cls.create(project_id=project_id, key=key, last_value=0)
            except IntegrityError:
                pass
        await cls.filter(project_id=project_id, key=key).update(last_value=F("last_value") + count)
        return (await cls.get(project_id=project_id, key=key)).last_value


class Role(Model):
    """A named set of permissions: admin, manager, agent, staff, cashier, readonly, or custom."""

    id = fields.IntField(primary_key=True)
    code = fields.CharField(max_length=32, unique=True)
    name = fields.CharField(max_length=64)
    permissions = fields.JSONField(default=list)
    # Permissions already offered to this role by default once; an admin's later
    # removal of one is kept instead of being re-granted at the next start.
    seen_defaults = fields.JSONField(default=list)
    builtin = fields.BooleanField(default=False)

    class Meta:
        table = "core_role"
        ordering = ["id"]

    def __str__(self) -> str:
        return self.name


class User(Model):
    """A staff account. Deactivated rather than deleted, so history keeps its author."""

    id = fields.IntField(primary_key=True)
    username = fields.CharField(max_length=64, unique=True)
    display_name = fields.CharField(max_length=64)
    email = fields.CharField(max_length=255, default="")
    phone = fields.CharField(max_length=32, default="")
    extension = fields.CharField(max_length=16, default="", db_index=True)  # PBX extension for screen pops
    password_hash = fields.CharField(max_length=255, default="")
    locale = fields.CharField(max_length=16, default="zh_CN")
    is_active = fields.BooleanField(default=True)
    must_change_password = fields.BooleanField(default=False)
    created_at = fields.DatetimeField(auto_now_add=True)
    password_changed_at = fields.DatetimeField(null=True)

    class Meta:
        table = "core_user"
        ordering = ["username"]

    def __str__(self) -> str:
        return self.display_name or self.username


class Membership(Model):
    """A user's role in one project, or in every project when `project` is empty (head office)."""

    id = fields.IntField(primary_key=True)
    user = fields.ForeignKeyField("core.User", related_name="memberships", on_delete=fields.CASCADE)
    project = fields.ForeignKeyField("core.Project", related_name="memberships", null=True, on_delete=fields.CASCADE)
    role = fields.ForeignKeyField("core.Role", related_name="memberships", on_delete=fields.RESTRICT)
    department = fields.ForeignKeyField(
        "core.Department", related_name="members", null=True, on_delete=fields.SET_NULL
    )

    class Meta:
        table = "core_membership"
        unique_together = (("user", "project", "role"),)
