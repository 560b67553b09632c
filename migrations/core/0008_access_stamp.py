from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields

# Changes to these tables move the access stamp, in the writing transaction (core/directory.py).
WATCHED = ("core_project", "core_project_module", "core_role", "core_membership")
BUMP = "UPDATE core_access_stamp SET value = value + 1 WHERE id = 1"


async def add_triggers(apps, schema_editor):
    client = schema_editor.client
    await client.execute_script("INSERT INTO core_access_stamp (id, value) VALUES (1, 0)")
    if client.capabilities.dialect == "postgres":
        await client.execute_script(
            "CREATE OR REPLACE FUNCTION core_bump_access_stamp() RETURNS trigger LANGUAGE plpgsql AS "
            f"$$ BEGIN {BUMP}; RETURN NULL; END $$"
        )
        for table in WATCHED:
            # Once per statement: a bulk load of memberships moves it once.
            await client.execute_script(
                f"CREATE TRIGGER {table}_access_stamp AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {table} "
                "FOR EACH STATEMENT EXECUTE FUNCTION core_bump_access_stamp()"
            )
        return
    for table in WATCHED:
        for event in ("INSERT", "UPDATE", "DELETE"):
            await client.execute_script(
                f"CREATE TRIGGER {table}_access_stamp_{event.lower()} AFTER {event} ON {table} BEGIN {BUMP}; END"
            )


async def drop_triggers(apps, schema_editor):
    client = schema_editor.client
    if client.capabilities.dialect == "postgres":
        for table in WATCHED:
            await client.execute_script(f"DROP TRIGGER IF EXISTS {table}_access_stamp ON {table}")
        await client.execute_script("DROP FUNCTION IF EXISTS core_bump_access_stamp()")
        return
    for table in WATCHED:
        for event in ("insert", "update", "delete"):
            await client.execute_script(f"DROP TRIGGER IF EXISTS {table}_access_stamp_{event}")


class Migration(migrations.Migration):
    # Estates, modules and roles cached per app process, checked against one stamp per request.
    dependencies = [('core', '0007_search_indexes')]

    initial = False

    operations = [
        ops.CreateModel(
            name='AccessStamp',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('value', fields.BigIntField(default=0)),
            ],
            options={'table': 'core_access_stamp', 'app': 'core', 'pk_attr': 'id', 'table_description': 'One row whose `value` moves with every change to estates, modules, roles or memberships.'},
            bases=['Model'],
        ),
        ops.RunPython(add_triggers, drop_triggers),
    ]
