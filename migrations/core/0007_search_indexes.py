from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields
from tortoise.indexes import Index


async def fill_reversed_numbers(apps, schema_editor):
    """Numbers stored before the column existed get their reversed digits."""
    client = schema_editor.client
    if client.capabilities.dialect == "postgres":
        await client.execute_script(
            "UPDATE core_customer_phone SET number_reversed = reverse(regexp_replace(number, '[^0-9]', '', 'g'))"
        )
        return
    _count, rows = await client.execute_query("SELECT id, number FROM core_customer_phone")
    values = [["".join(ch for ch in row["number"] if ch.isdigit())[::-1], row["id"]] for row in rows]
    if values:
        await client.execute_many("UPDATE core_customer_phone SET number_reversed = ? WHERE id = ?", values)


PREFIX_INDEXES = {
    "core_customer_name_prefix": "core_customer (name varchar_pattern_ops)",
    "core_unit_code_prefix": "core_unit (code varchar_pattern_ops)",
}


async def prefix_indexes(apps, schema_editor):
    """PostgreSQL answers `LIKE 'abc%'` from an index only in the "C" collation or with pattern operators."""
    # AddField does not create the index of a `db_index` field (Tortoise 1.1): made here, on both databases.
    await schema_editor.client.execute_script(
        'CREATE INDEX IF NOT EXISTS "idx_core_customer_phone_number_reversed" ON "core_customer_phone" ("number_reversed")'
    )
    if schema_editor.client.capabilities.dialect == "postgres":
        for name, target in PREFIX_INDEXES.items():
            await schema_editor.client.execute_script(f'CREATE INDEX IF NOT EXISTS "{name}" ON {target}')


async def drop_prefix_indexes(apps, schema_editor):
    await schema_editor.client.execute_script('DROP INDEX IF EXISTS "idx_core_customer_phone_number_reversed"')
    if schema_editor.client.capabilities.dialect == "postgres":
        for name in PREFIX_INDEXES:
            await schema_editor.client.execute_script(f'DROP INDEX IF EXISTS "{name}"')


class Migration(migrations.Migration):
    # Global search and the customer list at estate-group scale (docs/benchmarks.md).
    dependencies = [('core', '0006_auto_20261123_2217')]

    initial = False

    operations = [
        ops.AddIndex(
            model_name='Customer',
            index=Index(fields=['project_id', 'name']),
        ),
        ops.AddField(
            model_name='CustomerPhone',
            name='number_reversed',
            field=fields.CharField(default='', db_default='', db_index=True, max_length=32),
        ),
        ops.RunPython(fill_reversed_numbers, ops.RunPython.noop),
        ops.AddIndex(
            model_name='CustomerUnit',
            index=Index(fields=['unit_id']),
        ),
        ops.RunPython(prefix_indexes, drop_prefix_indexes),
    ]
