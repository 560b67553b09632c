from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from json import dumps, loads
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('core', '0003_auto_20261123_1940')]

    initial = False

    operations = [
        ops.CreateModel(
            name='RealtimeMessage',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('channel', fields.CharField(max_length=64)),
                ('event', fields.CharField(max_length=64)),
                ('payload', fields.JSONField(default=dict, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('created_at', fields.DatetimeField(db_index=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'core_realtime_message', 'app': 'core', 'indexes': [Index(fields=['channel', 'id'])], 'pk_attr': 'id', 'table_description': 'One published message, kept `keep_hours` so reconnecting browsers can fetch what they missed.'},
            bases=['Model'],
        ),
    ]
