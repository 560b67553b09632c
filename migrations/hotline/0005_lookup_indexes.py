from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise.indexes import Index

class Migration(migrations.Migration):
    # The work-order page read every assignment and callback of the estate group (docs/benchmarks.md).
    # Indexes of foreign keys PostgreSQL does not make by itself.
    dependencies = [('core', '0008_access_stamp'), ('hotline', '0004_work_order_indexes')]

    initial = False

    operations = [
        ops.AddIndex(
            model_name='Assignment',
            index=Index(fields=['order_id']),
        ),
        ops.AddIndex(
            model_name='Assignment',
            index=Index(fields=['assignee_id', 'done_at']),
        ),
        ops.AddIndex(
            model_name='CallbackTask',
            index=Index(fields=['order_id']),
        ),
        ops.AddIndex(
            model_name='CallbackTask',
            index=Index(fields=['customer_id']),
        ),
        ops.AddIndex(
            model_name='CallbackTask',
            index=Index(fields=['assignee_id', 'status']),
        ),
        ops.AddIndex(
            model_name='WorkOrder',
            index=Index(fields=['unit_id']),
        ),
    ]
