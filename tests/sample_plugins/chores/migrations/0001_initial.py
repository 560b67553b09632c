from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise.fields.base import OnDelete
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('core', '0001_initial')]

    initial = True

    operations = [
        ops.CreateModel(
            name='Tick',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('job', fields.CharField(max_length=32)),
                ('project', fields.ForeignKeyField('core.Project', source_field='project_id', null=True, db_constraint=True, to_field='id', related_name=False, on_delete=OnDelete.CASCADE)),
                ('slot', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('n', fields.IntField(default=0)),
                ('attempt', fields.IntField(default=1)),
                ('scope', fields.CharField(default='', max_length=64)),
                ('pid', fields.IntField(default=0)),
            ],
            options={'table': 'chores_tick', 'app': 'chores', 'pk_attr': 'id', 'table_description': 'One unit of work a test job did: tests count these to prove each slot ran once.'},
            bases=['Model'],
        ),
    ]
