import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("products", "0001_initial"),
    ]

    operations = [
        migrations.CreateModel(
            name="ProductImage",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True,
                        primary_key=True,
                        serialize=False,
                        verbose_name="ID",
                    ),
                ),
                ("url", models.TextField()),
                ("order", models.PositiveIntegerField()),
                ("is_label", models.BooleanField(default=False)),
                ("created_at", models.DateTimeField()),
                ("updated_at", models.DateTimeField(auto_now=True)),
                (
                    "product",
                    models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="product_images",
                        to="products.product",
                    ),
                ),
            ],
            options={
                "db_table": "product_images",
                "ordering": ["product_id", "order"],
                "constraints": [
                    models.UniqueConstraint(
                        fields=("product", "order"),
                        name="product_images_product_order_uniq",
                    ),
                    models.UniqueConstraint(
                        condition=models.Q(("is_label", True)),
                        fields=("product",),
                        name="product_images_one_label_per_product",
                    ),
                    models.CheckConstraint(
                        condition=models.Q(("url", ""), _negated=True),
                        name="product_images_url_not_empty",
                    ),
                ],
            },
        ),
    ]
