# product_json_state.rows_digest: the digest of the rows the recorded JSON yields (source.ROWS_DIGEST), which lets
# the validation skip decoding a product whose JSON and rows are those recorded.
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
    ]
