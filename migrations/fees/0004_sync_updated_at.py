from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    # Bills and payments synced through the JSON API (updated_since); only core's first migration is needed.
    dependencies = [('core', '0001_initial'), ('fees', '0003_bill_line_keys')]

    initial = False

    operations = [
        ops.AlterModelOptions(
            name='Bill',
            options={'table': 'fees_bill', 'app': 'fees', 'unique_together': (('unit', 'period'), ('project', 'number')), 'indexes': [Index(fields=['customer_id']), Index(fields=['project_id', 'period'])], 'pk_attr': 'id', 'table_description': "One unit's bill for one month: one per unit and period, enforced by the database (`updated_at`: API syncs)."},
        ),
        ops.AddField(
            model_name='Bill',
            name='updated_at',
            field=fields.DatetimeField(null=True, db_index=True, auto_now=False, auto_now_add=False),
        ),
        ops.AddField(
            model_name='Payment',
            name='updated_at',
            field=fields.DatetimeField(null=True, db_index=True, auto_now=False, auto_now_add=False),
        ),
        # Existing rows count as changed when last paid (or issued / received, or reversed).
        ops.RunSQL(
            "UPDATE fees_bill SET updated_at = COALESCE("
            "(SELECT MAX(a.created_at) FROM fees_allocation a WHERE a.bill_id = fees_bill.id), issued_at) "
            "WHERE updated_at IS NULL",
            reverse_sql=ops.RunSQL.noop,
        ),
        ops.RunSQL(
            "UPDATE fees_payment SET updated_at = COALESCE("
            "(SELECT r.received_at FROM fees_payment r WHERE r.reverses_id = fees_payment.id), received_at) "
            "WHERE updated_at IS NULL",
            reverse_sql=ops.RunSQL.noop,
        ),
        # The API's lists read one estate's records in order of (updated_at, id); AddField(db_index) makes no index.
        ops.RunSQL(
            "CREATE INDEX fees_bill_project_updated_idx ON fees_bill (project_id, updated_at, id)",
            reverse_sql="DROP INDEX fees_bill_project_updated_idx",
        ),
        ops.RunSQL(
            "CREATE INDEX fees_payment_project_updated_idx ON fees_payment (project_id, updated_at, id)",
            reverse_sql="DROP INDEX fees_payment_project_updated_idx",
        ),
    ]
