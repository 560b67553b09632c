from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from json import dumps, loads
from tortoise.fields.base import OnDelete
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    # Only core's projects, units and users are referenced: core's first migration is enough.
    dependencies = [('core', '0001_initial'), ('fees', '0001_initial')]

    initial = False

    operations = [
        ops.CreateModel(
            name='CreditHint',
            fields=[
                ('project', fields.ForeignKeyField('core.Project', source_field='project_id', db_constraint=True, to_field='id', related_name=False, on_delete=OnDelete.RESTRICT)),
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('unit', fields.OneToOneField('core.Unit', source_field='unit_id', db_constraint=True, to_field='id', related_name=False, on_delete=OnDelete.CASCADE)),
            ],
            options={'table': 'fees_credit_hint', 'app': 'fees', 'pk_attr': 'id', 'table_description': 'A unit that may have money not yet allocated to bills (credit): the bill run looks only at these.'},
            bases=['ProjectScopedModel'],
        ),
        ops.CreateModel(
            name='MeterImport',
            fields=[
                ('project', fields.ForeignKeyField('core.Project', source_field='project_id', db_constraint=True, to_field='id', related_name=False, on_delete=OnDelete.RESTRICT)),
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('filename', fields.CharField(max_length=255)),
                ('state', fields.CharField(default='invalid', max_length=16)),
                ('rows', fields.JSONField(default=list, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('total', fields.IntField(default=0)),
                ('amount', fields.DecimalField(default=0, max_digits=14, decimal_places=2)),
                ('errors', fields.JSONField(default=list, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('error_count', fields.IntField(default=0)),
                ('preview', fields.JSONField(default=list, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('summary', fields.JSONField(default=dict, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('created_by', fields.ForeignKeyField('core.User', source_field='created_by_id', null=True, db_constraint=True, to_field='id', related_name=False, on_delete=OnDelete.RESTRICT)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('imported_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'fees_meter_import', 'app': 'fees', 'pk_attr': 'id', 'table_description': 'An uploaded file of pass-through amounts: its checked rows, the error report, what the import wrote.'},
            bases=['ProjectScopedModel'],
        ),
        ops.AddIndex(
            model_name='Allocation',
            index=Index(fields=['unit_id']),
        ),
        ops.AddIndex(
            model_name='Allocation',
            index=Index(fields=['bill_id']),
        ),
        ops.AddIndex(
            model_name='Allocation',
            index=Index(fields=['payment_id']),
        ),
        ops.AddField(
            model_name='Bill',
            name='customer_relation',
            field=fields.CharField(default='', db_default='', max_length=16),
        ),
        ops.AddIndex(
            model_name='Bill',
            index=Index(fields=['customer_id']),
        ),
        ops.AddIndex(
            model_name='Bill',
            index=Index(fields=['project_id', 'period']),
        ),
        ops.AddIndex(
            model_name='BillLine',
            index=Index(fields=['bill_id']),
        ),
        ops.AddIndex(
            model_name='Discount',
            index=Index(fields=['unit_id']),
        ),
        ops.AddField(
            model_name='MeterCharge',
            name='updated_at',
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
        ops.AddField(
            model_name='MeterCharge',
            name='updated_by',
            field=fields.ForeignKeyField('core.User', source_field='updated_by_id', null=True, db_constraint=True, to_field='id', related_name=False, on_delete=OnDelete.RESTRICT),
        ),
        ops.AddIndex(
            model_name='Payment',
            index=Index(fields=['unit_id']),
        ),
        ops.AddIndex(
            model_name='Payment',
            index=Index(fields=['customer_id']),
        ),
        ops.AddIndex(
            model_name='PromiseToPay',
            index=Index(fields=['unit_id']),
        ),
        ops.AlterModelOptions(
            name='UnitBilling',
            options={'table': 'fees_unit_billing', 'app': 'fees', 'pk_attr': 'id', 'table_description': "Per-unit billing settings: whom the unit's bills go to, and who chose it when."},
        ),
        ops.AddField(
            model_name='UnitBilling',
            name='changed_at',
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
        ops.AddField(
            model_name='UnitBilling',
            name='changed_by',
            field=fields.ForeignKeyField('core.User', source_field='changed_by_id', null=True, db_constraint=True, to_field='id', related_name=False, on_delete=OnDelete.RESTRICT),
        ),
        # Units that already hold credit (payments not yet allocated) get their hint.
        ops.RunSQL(
            "INSERT INTO fees_credit_hint (project_id, unit_id) "
            "SELECT p.project_id, p.unit_id FROM fees_payment p GROUP BY p.project_id, p.unit_id "
            "HAVING SUM(p.amount) > COALESCE((SELECT SUM(a.amount) FROM fees_allocation a WHERE a.unit_id = p.unit_id), 0)",
            reverse_sql="DELETE FROM fees_credit_hint",
        ),
    ]
