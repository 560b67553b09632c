from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields


class Migration(migrations.Migration):
    # Cases are synced through the JSON API by `updated_since` (docs/api.md).
    dependencies = [('complaints', '0001_initial'), ('core', '0007_search_indexes')]

    initial = False

    operations = [
        ops.AddField(
            model_name='Case',
            name='updated_at',
            field=fields.DatetimeField(null=True, db_index=True, auto_now=False, auto_now_add=False),
        ),
        # Cases opened before the API existed count as changed when they reached their current step.
        ops.RunSQL("UPDATE complaints_case SET updated_at = step_at WHERE updated_at IS NULL"),
        # AddField does not create the index (Tortoise 1.1); the API's lists walk an estate's cases in this order.
        ops.RunSQL(
            'CREATE INDEX IF NOT EXISTS "idx_complaints_case_sync" ON "complaints_case" ("project_id", "updated_at", "id")',
            reverse_sql='DROP INDEX IF EXISTS "idx_complaints_case_sync"',
        ),
    ]
