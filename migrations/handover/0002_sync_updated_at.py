from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields


class Migration(migrations.Migration):
    # Key sets and unit handovers are synced through the JSON API by `updated_since` (docs/api.md).
    dependencies = [('handover', '0001_initial'), ('core', '0007_search_indexes')]

    initial = False

    operations = [
        ops.AddField(
            model_name='KeySet',
            name='updated_at',
            field=fields.DatetimeField(null=True, db_index=True, auto_now=False, auto_now_add=False),
        ),
        ops.AddField(
            model_name='UnitHandover',
            name='updated_at',
            field=fields.DatetimeField(null=True, db_index=True, auto_now=False, auto_now_add=False),
        ),
        # Existing rows count as changed at their last checkout or return (key sets), at the owner's
        # signature or their last appointment (handovers), else when they were created.
        ops.RunSQL(
            "UPDATE handover_key_set SET updated_at = COALESCE("
            "(SELECT MAX(COALESCE(c.returned_at, c.out_at)) FROM handover_key_checkout c WHERE c.keyset_id = handover_key_set.id), "
            "created_at) WHERE updated_at IS NULL"
        ),
        ops.RunSQL(
            "UPDATE handover_unit_handover SET updated_at = COALESCE(accepted_at, "
            "(SELECT MAX(COALESCE(a.checked_in_at, a.cancelled_at, a.created_at)) FROM handover_appointment a "
            "WHERE a.handover_id = handover_unit_handover.id), created_at) WHERE updated_at IS NULL"
        ),
        # AddField does not create the index (Tortoise 1.1); the API's lists walk an estate's records in this order.
        ops.RunSQL(
            'CREATE INDEX IF NOT EXISTS "idx_handover_key_set_sync" ON "handover_key_set" ("project_id", "updated_at", "id")',
            reverse_sql='DROP INDEX IF EXISTS "idx_handover_key_set_sync"',
        ),
        ops.RunSQL(
            'CREATE INDEX IF NOT EXISTS "idx_handover_unit_handover_sync" ON "handover_unit_handover" '
            '("project_id", "updated_at", "id")',
            reverse_sql='DROP INDEX IF EXISTS "idx_handover_unit_handover_sync"',
        ),
    ]
