from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from json import dumps, loads
from tortoise.fields.base import OnDelete
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('core', '0001_initial'), ('core', '0002_auto_20261123_1932'), ('core', '0003_auto_20261123_1940'), ('core', '0004_auto_20261123_1948'), ('core', '0005_auto_20261123_2003')]

    initial = False

    operations = [
        ops.CreateModel(
            name='ApiToken',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('name', fields.CharField(max_length=100)),
                ('note', fields.TextField(default='', unique=False)),
                ('prefix', fields.CharField(max_length=16)),
                ('token_hash', fields.CharField(unique=True, max_length=64)),
                ('scopes', fields.JSONField(default=list, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('project_ids', fields.JSONField(default=list, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('rate_limit', fields.IntField(default=0)),
                ('expires_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('created_by', fields.ForeignKeyField('core.User', source_field='created_by_id', null=True, db_constraint=True, to_field='id', related_name=False, on_delete=OnDelete.SET_NULL)),
                ('revoked_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('revoked_by', fields.ForeignKeyField('core.User', source_field='revoked_by_id', null=True, db_constraint=True, to_field='id', related_name=False, on_delete=OnDelete.SET_NULL)),
                ('last_used_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('last_used_ip', fields.CharField(default='', max_length=64)),
            ],
            options={'table': 'core_api_token', 'app': 'core', 'pk_attr': 'id', 'table_description': 'A token an integration sends as `Authorization: Bearer ...`, stored as its SHA-256 only.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='ApiIdempotencyKey',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('token', fields.ForeignKeyField('core.ApiToken', source_field='token_id', db_constraint=True, to_field='id', related_name=False, on_delete=OnDelete.CASCADE)),
                ('key', fields.CharField(max_length=255)),
                ('fingerprint', fields.CharField(max_length=64)),
                ('status', fields.IntField(default=0)),
                ('body', fields.TextField(default='', unique=False)),
                ('created_at', fields.DatetimeField(db_index=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'core_api_idempotency_key', 'app': 'core', 'unique_together': (('token', 'key'),), 'pk_attr': 'id', 'table_description': "The response of a create, kept under the client's `Idempotency-Key` to replay it to retries."},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='ApiRateWindow',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('token', fields.ForeignKeyField('core.ApiToken', source_field='token_id', db_constraint=True, to_field='id', related_name=False, on_delete=OnDelete.CASCADE)),
                ('minute', fields.BigIntField()),
                ('count', fields.IntField(default=0)),
            ],
            options={'table': 'core_api_rate_window', 'app': 'core', 'unique_together': (('token', 'minute'),), 'pk_attr': 'id', 'table_description': "Requests of one token in one minute (the rate limit's counter, shared by every app process)."},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='WebhookSubscription',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('name', fields.CharField(max_length=100)),
                ('url', fields.CharField(max_length=500)),
                ('events', fields.JSONField(default=list, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('project_ids', fields.JSONField(default=list, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('secret', fields.CharField(max_length=100)),
                ('is_active', fields.BooleanField(default=True)),
                ('note', fields.TextField(default='', unique=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('created_by', fields.ForeignKeyField('core.User', source_field='created_by_id', null=True, db_constraint=True, to_field='id', related_name=False, on_delete=OnDelete.SET_NULL)),
            ],
            options={'table': 'core_webhook_subscription', 'app': 'core', 'pk_attr': 'id', 'table_description': 'A URL that receives the chosen events of the chosen estates.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='WebhookDelivery',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('subscription', fields.ForeignKeyField('core.WebhookSubscription', source_field='subscription_id', db_constraint=True, to_field='id', related_name='deliveries', on_delete=OnDelete.CASCADE)),
                ('project', fields.ForeignKeyField('core.Project', source_field='project_id', null=True, db_constraint=True, to_field='id', related_name=False, on_delete=OnDelete.SET_NULL)),
                ('event', fields.CharField(db_index=True, max_length=100)),
                ('event_id', fields.CharField(db_index=True, max_length=64)),
                ('payload', fields.TextField(unique=False)),
                ('state', fields.CharField(default='pending', db_index=True, max_length=16)),
                ('attempts', fields.IntField(default=0)),
                ('next_attempt_at', fields.DatetimeField(db_index=True, auto_now=False, auto_now_add=False)),
                ('lease_until', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('worker', fields.CharField(default='', max_length=128)),
                ('response_status', fields.IntField(null=True)),
                ('response_body', fields.TextField(default='', unique=False)),
                ('last_error', fields.TextField(default='', unique=False)),
                ('duration_ms', fields.IntField(null=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('delivered_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('replay_of', fields.ForeignKeyField('core.WebhookDelivery', source_field='replay_of_id', null=True, db_constraint=True, to_field='id', related_name='replays', on_delete=OnDelete.SET_NULL)),
                ('replayed_by', fields.ForeignKeyField('core.User', source_field='replayed_by_id', null=True, db_constraint=True, to_field='id', related_name=False, on_delete=OnDelete.SET_NULL)),
            ],
            options={'table': 'core_webhook_delivery', 'app': 'core', 'pk_attr': 'id', 'table_description': 'One event posted (or to be posted) to one subscription, with the outcome of its attempts.'},
            bases=['Model'],
        ),
    ]
