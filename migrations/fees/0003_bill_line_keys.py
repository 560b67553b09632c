from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise.fields.base import OnDelete
from tortoise import fields


async def drop_repeated_line_keys(apps, schema_editor):
    """A line's project and unit repeat its bill's, whose own foreign keys vouch for them.

    Checking them again for every line slowed the bill run by about a quarter
    (PostgreSQL). SQLite cannot drop a constraint in place and keeps them.
    """
    client = schema_editor.client
    if client.capabilities.dialect == "postgres":
        await client.execute_script(
            "ALTER TABLE fees_bill_line DROP CONSTRAINT IF EXISTS fees_bill_line_project_id_fkey, "
            "DROP CONSTRAINT IF EXISTS fees_bill_line_unit_id_fkey"
        )


async def restore_line_keys(apps, schema_editor):
    client = schema_editor.client
    if client.capabilities.dialect == "postgres":
        await client.execute_script(
            "ALTER TABLE fees_bill_line "
            "ADD CONSTRAINT fees_bill_line_project_id_fkey FOREIGN KEY (project_id) REFERENCES core_project (id) ON DELETE RESTRICT, "
            "ADD CONSTRAINT fees_bill_line_unit_id_fkey FOREIGN KEY (unit_id) REFERENCES core_unit (id) ON DELETE RESTRICT"
        )


class AlterFieldState(ops.AlterField):
    """The field's new definition for the models' state only: the table itself is left alone.

    Tortoise's SQLite AlterField rebuilds the table and loses its UNIQUE
    constraint and indexes; the constraints are dropped by the function above.
    """

    async def database_forward(self, app_label, old_state, new_state, state_editor=None) -> None:
        return None

    async def database_backward(self, app_label, old_state, new_state, state_editor=None) -> None:
        return None


class Migration(migrations.Migration):
    dependencies = [('core', '0001_initial'), ('fees', '0002_bill_to_meter_import_indexes')]

    initial = False

    operations = [
        AlterFieldState(
            model_name='BillLine',
            name='project',
            field=fields.ForeignKeyField('core.Project', source_field='project_id', db_constraint=False, to_field='id', related_name=False, on_delete=OnDelete.RESTRICT),
        ),
        AlterFieldState(
            model_name='BillLine',
            name='unit',
            field=fields.ForeignKeyField('core.Unit', source_field='unit_id', db_constraint=False, to_field='id', related_name=False, on_delete=OnDelete.RESTRICT),
        ),
        ops.RunPython(drop_repeated_line_keys, restore_line_keys),
    ]
