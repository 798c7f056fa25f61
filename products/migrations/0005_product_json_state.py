# The per-product reconciliation state (products.models.ProductJsonState): what --sync and the follower
# compare a product's JSON with, and which products a refused JSON holds back from marketplaces.
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("products", "0004_product_images_leaves_the_orm"),
    ]

    operations = [
        migrations.CreateModel(
            name="ProductJsonState",
            fields=[
                ("product_id", models.BigIntegerField(primary_key=True, serialize=False)),
                ("json_digest", models.UUIDField(null=True)),
                ("refused", models.TextField(blank=True, null=True)),
                ("recorded_at", models.DateTimeField()),
            ],
            options={"db_table": "product_json_state"},
        ),
    ]
