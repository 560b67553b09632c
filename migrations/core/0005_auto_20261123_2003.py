from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('core', '0001_initial'), ('core', '0002_auto_20261123_1932'), ('core', '0003_auto_20261123_1940'), ('core', '0004_auto_20261123_1948')]

    initial = False

    operations = [
        ops.CreateModel(
            name='LinkUse',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('link_id', fields.CharField(unique=True, max_length=64)),
                ('purpose', fields.CharField(max_length=64)),
                ('used_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'core_link_use', 'app': 'core', 'pk_attr': 'id', 'table_description': 'The use of a single-use link: its id can be inserted only once.'},
            bases=['Model'],
        ),
    ]
