from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('core', '0006_auto_20261123_2217'), ('hotline', '0002_auto_20261123_1950')]

    initial = False

    operations = [
        ops.AlterModelOptions(
            name='WorkOrder',
            options={'table': 'hotline_work_order', 'app': 'hotline', 'unique_together': (('project', 'number'),), 'pk_attr': 'id', 'table_description': 'One request from a customer, numbered GD-<year>-<nnnnnn> per estate (`updated_at`: API syncs).'},
        ),
        ops.AddField(
            model_name='WorkOrder',
            name='updated_at',
            field=fields.DatetimeField(null=True, db_index=True, auto_now=False, auto_now_add=False),
        ),
        # Orders recorded before the API existed count as changed when they were received.
        ops.RunSQL("UPDATE hotline_work_order SET updated_at = received_at WHERE updated_at IS NULL"),
    ]
