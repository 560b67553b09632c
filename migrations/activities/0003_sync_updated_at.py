from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields

class Migration(migrations.Migration):
    # Activities and registrations synced through the JSON API (updated_since).
    dependencies = [('activities', '0002_auto_20261123_2212'), ('core', '0007_search_indexes')]

    initial = False

    operations = [
        ops.AlterModelOptions(
            name='Activity',
            options={'table': 'activities_activity', 'app': 'activities', 'unique_together': (('host_activity', 'project'),), 'pk_attr': 'id', 'table_description': "A community event, owners' gathering or open day with a limited number of seats (`updated_at`: API syncs)."},
        ),
        ops.AddField(
            model_name='Activity',
            name='updated_at',
            field=fields.DatetimeField(null=True, db_index=True, auto_now=False, auto_now_add=False),
        ),
        ops.AlterModelOptions(
            name='Registration',
            options={'table': 'activities_registration', 'app': 'activities', 'unique_together': (('activity', 'customer'),), 'pk_attr': 'id', 'table_description': "One person's sign-up for an activity, with family members, check-in and feedback (`updated_at`: API syncs)."},
        ),
        ops.AddField(
            model_name='Registration',
            name='updated_at',
            field=fields.DatetimeField(null=True, db_index=True, auto_now=False, auto_now_add=False),
        ),
        # Existing rows count as changed at their last recorded step.
        ops.RunSQL(
            "UPDATE activities_activity SET updated_at = created_at WHERE updated_at IS NULL",
            reverse_sql="SELECT 1",
        ),
        ops.RunSQL(
            "UPDATE activities_registration SET updated_at = COALESCE("
            "feedback_at, checked_in_at, cancelled_at, confirmed_at, waitlisted_at, created_at) "
            "WHERE updated_at IS NULL",
            reverse_sql="SELECT 1",
        ),
        # The API's lists read one estate's records in order of (updated_at, id); AddField(db_index) makes no index.
        ops.RunSQL(
            "CREATE INDEX activities_activity_project_updated_idx ON activities_activity (project_id, updated_at, id)",
            reverse_sql="DROP INDEX activities_activity_project_updated_idx",
        ),
        ops.RunSQL(
            "CREATE INDEX activities_registration_project_updated_idx "
            "ON activities_registration (project_id, updated_at, id)",
            reverse_sql="DROP INDEX activities_registration_project_updated_idx",
        ),
    ]
