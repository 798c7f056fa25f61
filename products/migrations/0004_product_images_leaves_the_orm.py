# products.images leaves Django's state only: the column stays in every tenant's database as the legacy
# source of the image migration, read and written by raw SQL alone (products/legacy_json.py, the migration
# engine, the image service's JSON mirror) until `finalize_images` drops it tenant by tenant. 0001 still
# creates it for new tenants, so every tenant goes through the same lifecycle.
from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("products", "0003_removed_product_images"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.RemoveField(model_name="product", name="images")],
            database_operations=[],
        ),
    ]
