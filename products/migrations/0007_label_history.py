# The label history (products.models.LabelChange) and bulk label changes (LabelJob, LabelJobItem): who changed
# which product's label when, from which image to which, so the admin can undo one change or a whole bulk change.

import django.contrib.postgres.fields
import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("products", "0006_image_url_search_index"),
    ]

    operations = [
        migrations.CreateModel(
            name="LabelJob",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                (
                    "action",
                    models.CharField(
                        choices=[
                            ("make_label", "make price labels"),
                            ("clear_label", "clear price labels"),
                            ("undo", "undo a bulk change"),
                        ],
                        max_length=20,
                    ),
                ),
                ("actor", models.TextField()),
                ("created_at", models.DateTimeField()),
                ("finished_at", models.DateTimeField(blank=True, null=True)),
                (
                    "undoes",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="undone_by",
                        to="products.labeljob",
                    ),
                ),
            ],
            options={
                "db_table": "label_jobs",
                "ordering": ["-id"],
            },
        ),
        migrations.CreateModel(
            name="LabelChange",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("product_id", models.BigIntegerField()),
                ("made_at", models.DateTimeField()),
                ("actor", models.TextField(blank=True)),
                (
                    "photos_before",
                    django.contrib.postgres.fields.ArrayField(base_field=models.BigIntegerField(), size=None),
                ),
                ("label_before", models.BigIntegerField(blank=True, null=True)),
                (
                    "photos_after",
                    django.contrib.postgres.fields.ArrayField(base_field=models.BigIntegerField(), size=None),
                ),
                ("label_after", models.BigIntegerField(blank=True, null=True)),
                ("urls", models.JSONField(default=dict)),
                (
                    "undoes",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="undone_by",
                        to="products.labelchange",
                    ),
                ),
                (
                    "job",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="changes",
                        to="products.labeljob",
                    ),
                ),
            ],
            options={
                "db_table": "label_changes",
                "ordering": ["-id"],
            },
        ),
        migrations.CreateModel(
            name="LabelJobItem",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("product_id", models.BigIntegerField()),
                ("image_id", models.BigIntegerField(blank=True, null=True)),
                (
                    "outcome",
                    models.CharField(
                        blank=True,
                        choices=[("changed", "changed"), ("unchanged", "already so"), ("refused", "refused")],
                        max_length=20,
                        null=True,
                    ),
                ),
                ("note", models.TextField(blank=True, default="")),
                (
                    "change",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to="products.labelchange",
                    ),
                ),
                (
                    "job",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE, related_name="items", to="products.labeljob"
                    ),
                ),
                (
                    "undoes",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to="products.labelchange",
                    ),
                ),
            ],
            options={
                "db_table": "label_job_items",
                "ordering": ["job_id", "product_id"],
            },
        ),
        migrations.AddIndex(
            model_name="labelchange",
            index=models.Index(fields=["product_id", "-id"], name="label_changes_product_idx"),
        ),
        migrations.AddIndex(
            model_name="labeljobitem",
            index=models.Index(
                condition=models.Q(("outcome__isnull", True)),
                fields=["job", "product_id"],
                name="label_job_items_pending_idx",
            ),
        ),
        migrations.AddConstraint(
            model_name="labeljobitem",
            constraint=models.UniqueConstraint(fields=("job", "product_id"), name="label_job_items_one_per_product"),
        ),
    ]
