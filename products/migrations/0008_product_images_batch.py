# One migration batch's products as migrate_images read their JSON (products.migration.batches): written and
# emptied by the statements of the batch's transaction, so that each of them reads tables of the tenant's schema
# and Citus runs it whole on the tenant's worker. Logged, with a primary key: citus_schema_move copies a schema's
# tables by logical replication, which takes neither an unlogged table nor one without a replica identity.
from django.db import migrations

CREATE = """CREATE TABLE product_images_batch (
    id bigint PRIMARY KEY,
    product_created_at timestamptz NOT NULL,
    is_deleted boolean NOT NULL,
    error text,
    repairs text[] NOT NULL,
    has_rows boolean NOT NULL,
    json_digest uuid,
    urls text[],
    orders integer[],
    label_flags boolean[],
    created_ats timestamptz[]
)"""


class Migration(migrations.Migration):
    dependencies = [
        ("products", "0007_label_history"),
    ]

    operations = [
        migrations.RunSQL(CREATE, "DROP TABLE product_images_batch"),
    ]
