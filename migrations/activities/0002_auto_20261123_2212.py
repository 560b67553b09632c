from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise.fields.base import OnDelete
from tortoise import fields
from tortoise.migrations.constraints import UniqueConstraint

class Migration(migrations.Migration):
    dependencies = [('activities', '0001_initial'), ('core', '0001_initial'), ('core', '0002_auto_20261123_1932'), ('core', '0003_auto_20261123_1940'), ('core', '0004_auto_20261123_1948'), ('core', '0005_auto_20261123_2003')]

    initial = False

    operations = [
        ops.AddField(
            model_name='Activity',
            name='host_activity',
            field=fields.ForeignKeyField('activities.Activity', source_field='host_activity_id', null=True, db_constraint=True, to_field='id', related_name='guest_activities', on_delete=OnDelete.RESTRICT),
        ),
        ops.AddConstraint(
            model_name='Activity',
            constraint=UniqueConstraint(fields=('host_activity', 'project'), name=None),
        ),
    ]
