from tortoise import fields
from tortoise.models import Model


class Tick(Model):
    """One unit of work a test job did: tests count these to prove each slot ran once."""

    id = fields.IntField(primary_key=True)
    job = fields.CharField(max_length=32)
    project = fields.ForeignKeyField("core.Project", related_name=False, null=True, on_delete=fields.CASCADE)
    slot = fields.DatetimeField()
    n = fields.IntField(default=0)
    attempt = fields.IntField(default=1)
    scope = fields.CharField(max_length=64, default="")
    pid = fields.IntField(default=0)

    class Meta:
        table = "chores_tick"
