from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('core', '0001_initial')]

    initial = False

    operations = [
        ops.CreateModel(
            name='LoginThrottle',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('key', fields.CharField(unique=True, max_length=128)),
                ('failures', fields.IntField(default=0)),
                ('last_failure_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('locked_until', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'core_login_throttle', 'app': 'core', 'pk_attr': 'id', 'table_description': 'Failed logins per account ("user:<name>") and per client address ("ip:<addr>").'},
            bases=['Model'],
        ),
    ]
