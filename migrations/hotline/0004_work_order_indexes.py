from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise.indexes import Index


class Migration(migrations.Migration):
    # The work-order list and a customer's orders at estate-group scale (docs/benchmarks.md).
    dependencies = [('core', '0001_initial'), ('hotline', '0003_auto_20261123_2217')]

    initial = False

    operations = [
        ops.AddIndex(
            model_name='WorkOrder',
            index=Index(fields=['project_id', 'status', 'received_at']),
        ),
        ops.AddIndex(
            model_name='WorkOrder',
            index=Index(fields=['project_id', 'received_at']),
        ),
        ops.AddIndex(
            model_name='WorkOrder',
            index=Index(fields=['customer_id']),
        ),
    ]
