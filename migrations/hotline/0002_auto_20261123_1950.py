from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise.fields.base import OnDelete
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('core', '0004_auto_20261123_1948'), ('hotline', '0001_initial')]

    initial = False

    operations = [
        ops.CreateModel(
            name='DutyReview',
            fields=[
                ('project', fields.ForeignKeyField('core.Project', source_field='project_id', db_constraint=True, to_field='id', related_name=False, on_delete=OnDelete.RESTRICT)),
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('day', fields.DateField()),
                ('reviewer', fields.ForeignKeyField('core.User', source_field='reviewer_id', db_constraint=True, to_field='id', related_name=False, on_delete=OnDelete.RESTRICT)),
                ('note', fields.TextField(default='', unique=False)),
                ('reviewed_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'hotline_duty_review', 'app': 'hotline', 'unique_together': (('project', 'day'),), 'pk_attr': 'id', 'table_description': "The manager's daily check of the duty log (客户主任每日抽查《值班记录》)."},
            bases=['ProjectScopedModel'],
        ),
        ops.CreateModel(
            name='DutyShift',
            fields=[
                ('project', fields.ForeignKeyField('core.Project', source_field='project_id', db_constraint=True, to_field='id', related_name=False, on_delete=OnDelete.RESTRICT)),
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('agent', fields.ForeignKeyField('core.User', source_field='agent_id', db_constraint=True, to_field='id', related_name=False, on_delete=OnDelete.RESTRICT)),
                ('started_at', fields.DatetimeField(db_index=True, auto_now=False, auto_now_add=False)),
                ('ended_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('handover_note', fields.TextField(default='', unique=False)),
                ('acknowledged_by', fields.ForeignKeyField('core.User', source_field='acknowledged_by_id', null=True, db_constraint=True, to_field='id', related_name=False, on_delete=OnDelete.RESTRICT)),
                ('acknowledged_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'hotline_duty_shift', 'app': 'hotline', 'pk_attr': 'id', 'table_description': "One agent's shift at an estate's service desk (值班), ended with a handover note."},
            bases=['ProjectScopedModel'],
        ),
        ops.CreateModel(
            name='DutyLogEntry',
            fields=[
                ('project', fields.ForeignKeyField('core.Project', source_field='project_id', db_constraint=True, to_field='id', related_name=False, on_delete=OnDelete.RESTRICT)),
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('shift', fields.ForeignKeyField('hotline.DutyShift', source_field='shift_id', db_constraint=True, to_field='id', related_name='entries', on_delete=OnDelete.RESTRICT)),
                ('kind', fields.CharField(default='visit', max_length=16)),
                ('at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('visitor', fields.CharField(default='', max_length=64)),
                ('customer', fields.ForeignKeyField('core.Customer', source_field='customer_id', null=True, db_constraint=True, to_field='id', related_name=False, on_delete=OnDelete.SET_NULL)),
                ('summary', fields.TextField(unique=False)),
                ('author', fields.ForeignKeyField('core.User', source_field='author_id', db_constraint=True, to_field='id', related_name=False, on_delete=OnDelete.RESTRICT)),
            ],
            options={'table': 'hotline_duty_log_entry', 'app': 'hotline', 'pk_attr': 'id', 'table_description': 'A line of the duty log (值班记录表) written by hand: a walk-in, a call outside the PBX, anything else.'},
            bases=['ProjectScopedModel'],
        ),
        ops.CreateModel(
            name='FaqArticle',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('project', fields.ForeignKeyField('core.Project', source_field='project_id', null=True, db_constraint=True, to_field='id', related_name=False, on_delete=OnDelete.CASCADE)),
                ('question', fields.CharField(max_length=255)),
                ('answer', fields.TextField(unique=False)),
                ('tags', fields.CharField(default='', max_length=255)),
                ('search_keys', fields.TextField(default='', unique=False)),
                ('is_active', fields.BooleanField(default=True)),
                ('created_by', fields.ForeignKeyField('core.User', source_field='created_by_id', null=True, db_constraint=True, to_field='id', related_name=False, on_delete=OnDelete.RESTRICT)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={'table': 'hotline_faq_article', 'app': 'hotline', 'pk_attr': 'id', 'table_description': 'An entry of the FAQ (《答客问》): of one estate, or for every estate when it has no project.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='PbxIntegration',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('name', fields.CharField(max_length=64)),
                ('project', fields.ForeignKeyField('core.Project', source_field='project_id', null=True, db_constraint=True, to_field='id', related_name=False, on_delete=OnDelete.CASCADE)),
                ('secret', fields.CharField(max_length=128)),
                ('adapter', fields.CharField(default='generic', max_length=32)),
                ('max_skew_seconds', fields.IntField(default=300)),
                ('is_active', fields.BooleanField(default=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'hotline_pbx_integration', 'app': 'hotline', 'pk_attr': 'id', 'table_description': 'A PBX or cloud call centre that posts call events to us, signed with its own secret.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Call',
            fields=[
                ('project', fields.ForeignKeyField('core.Project', source_field='project_id', null=True, db_constraint=True, to_field='id', related_name=False, on_delete=OnDelete.RESTRICT)),
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('integration', fields.ForeignKeyField('hotline.PbxIntegration', source_field='integration_id', null=True, db_constraint=True, to_field='id', related_name=False, on_delete=OnDelete.SET_NULL)),
                ('external_id', fields.CharField(max_length=128)),
                ('caller', fields.CharField(db_index=True, max_length=32)),
                ('customer', fields.ForeignKeyField('core.Customer', source_field='customer_id', null=True, db_constraint=True, to_field='id', related_name=False, on_delete=OnDelete.SET_NULL)),
                ('agent', fields.ForeignKeyField('core.User', source_field='agent_id', null=True, db_constraint=True, to_field='id', related_name=False, on_delete=OnDelete.RESTRICT)),
                ('extension', fields.CharField(default='', max_length=16)),
                ('status', fields.CharField(default='ringing', max_length=16)),
                ('started_at', fields.DatetimeField(db_index=True, auto_now=False, auto_now_add=False)),
                ('answered_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('ended_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('duration_seconds', fields.IntField(default=0)),
                ('work_order_id', fields.BigIntField(null=True)),
                ('callback_task_id', fields.BigIntField(null=True)),
            ],
            options={'table': 'hotline_call', 'app': 'hotline', 'unique_together': (('integration', 'external_id'),), 'pk_attr': 'id', 'table_description': 'A phone call as the PBX reported it, linked to the caller and what came of it.'},
            bases=['ProjectScopedModel'],
        ),
        ops.CreateModel(
            name='FaqQuestion',
            fields=[
                ('project', fields.ForeignKeyField('core.Project', source_field='project_id', db_constraint=True, to_field='id', related_name=False, on_delete=OnDelete.RESTRICT)),
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('question', fields.TextField(unique=False)),
                ('asked_by', fields.ForeignKeyField('core.User', source_field='asked_by_id', db_constraint=True, to_field='id', related_name=False, on_delete=OnDelete.RESTRICT)),
                ('asked_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('call', fields.ForeignKeyField('hotline.Call', source_field='call_id', null=True, db_constraint=True, to_field='id', related_name=False, on_delete=OnDelete.SET_NULL)),
                ('status', fields.CharField(default='open', db_index=True, max_length=16)),
                ('answered_by', fields.ForeignKeyField('core.User', source_field='answered_by_id', null=True, db_constraint=True, to_field='id', related_name=False, on_delete=OnDelete.RESTRICT)),
                ('answered_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('article', fields.ForeignKeyField('hotline.FaqArticle', source_field='article_id', null=True, db_constraint=True, to_field='id', related_name=False, on_delete=OnDelete.SET_NULL)),
            ],
            options={'table': 'hotline_faq_question', 'app': 'hotline', 'pk_attr': 'id', 'table_description': 'A question the FAQ had no answer for: a task for the manager until answered (补充《答客问》).'},
            bases=['ProjectScopedModel'],
        ),
        ops.CreateModel(
            name='PbxEventReceipt',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('integration', fields.ForeignKeyField('hotline.PbxIntegration', source_field='integration_id', db_constraint=True, to_field='id', related_name=False, on_delete=OnDelete.CASCADE)),
                ('event_id', fields.CharField(max_length=128)),
                ('received_at', fields.DatetimeField(db_index=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'hotline_pbx_event_receipt', 'app': 'hotline', 'unique_together': (('integration', 'event_id'),), 'pk_attr': 'id', 'table_description': 'An event id already processed: the same event posted again is ignored (replay protection).'},
            bases=['Model'],
        ),
    ]
