"""The visitor log: one row per visit to a unit of the estate."""

from tortoise import fields

from core.api import ProjectScopedModel


class Visitor(ProjectScopedModel):
    """A visitor registered at the gate, and when they left."""

    id = fields.IntField(primary_key=True)
    name = fields.CharField(max_length=64)
    phone = fields.CharField(max_length=32, default="")  # normalised (+8613800138000), or empty
    unit = fields.ForeignKeyField("core.Unit", related_name=False, on_delete=fields.RESTRICT)
    purpose = fields.CharField(max_length=200, default="")
    arrived_at = fields.DatetimeField(db_index=True)
    left_at = fields.DatetimeField(null=True)
    # True when the nightly job closed a visit nobody marked as left.
    closed_automatically = fields.BooleanField(default=False)

    class Meta:
        table = "visitors_visitor"
        ordering = ["-arrived_at", "-id"]

    def __str__(self) -> str:
        return self.name
