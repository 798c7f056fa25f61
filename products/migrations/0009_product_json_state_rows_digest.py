# product_json_state.rows_digest: the digest of the rows the recorded JSON yields (source.ROWS_DIGEST), which lets
# the validation skip decoding a product whose JSON and rows are those recorded; on Citus product_images_batch
# carries it from the batch's reading to that record (products.migration.batches).
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("products", "0008_product_images_batch"),
    ]

    operations = [
        migrations.AddField(
            model_name="productjsonstate",
            name="rows_digest",
            field=models.UUIDField(null=True),
        ),
        migrations.RunSQL(
            "ALTER TABLE product_images_batch ADD COLUMN rows_digest uuid",
            "ALTER TABLE product_images_batch DROP COLUMN rows_digest",
        ),
    ]
