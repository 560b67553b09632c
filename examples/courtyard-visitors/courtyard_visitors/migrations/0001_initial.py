from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise.fields.base import OnDelete
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('core', '0001_initial')]

    initial = True

    operations = [
        ops.CreateModel(
            name='Visitor',
            fields=[
                ('project', fields.ForeignKeyField('core.Project', source_field='project_id', db_constraint=True, to_field='id', related_name=False, on_delete=OnDelete.RESTRICT)),
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('name', fields.CharField(max_length=64)),
                ('phone', fields.CharField(default='', max_length=32)),
                ('unit', fields.ForeignKeyField('core.Unit', source_field='unit_id', db_constraint=True, to_field='id', related_name=False, on_delete=OnDelete.RESTRICT)),
                ('purpose', fields.CharField(default='', max_length=200)),
                ('arrived_at', fields.DatetimeField(db_index=True, auto_now=False, auto_now_add=False)),
                ('left_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('closed_automatically', fields.BooleanField(default=False)),
            ],
            options={'table': 'visitors_visitor', 'app': 'visitors', 'pk_attr': 'id', 'table_description': 'A visitor registered at the gate, and when they left.'},
            bases=['ProjectScopedModel'],
        ),
    ]
