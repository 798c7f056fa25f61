# The image list's URL search (icontains: UPPER(url) LIKE UPPER('%term%')) reads a trigram index on upper(url)
# instead of every row: 1.6 s on a seller with 1,968,374 images before it (docs/benchmark.md, "The admin").
#
# pg_trgm is created once per database, in public (not the first tenant's schema, where the search_path would
# put it and where the other tenants could not see it), and the index names its operator class with the schema
# the extension is in. A server without pg_trgm (the pgserver wheel's PostgreSQL 16 the CI tests on ships none)
# gets no index: the search still works, scanning the table; so does a server where the extension is there but
# not yet created and the migration's role may not create it.
from django.db import migrations

from products import url_search_index


def create_index(apps, schema_editor):
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("SELECT EXISTS (SELECT FROM pg_available_extensions WHERE name = 'pg_trgm')")
        if not cursor.fetchone()[0]:
            return
    trgm_in = url_search_index.trgm_schema()
    if trgm_in is None:
        with schema_editor.connection.cursor() as cursor:
            cursor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm WITH SCHEMA public")
        trgm_in = "public"
    # (The index's definition is shared with migrate_images, which sets it aside during a first backfill.)
    url_search_index.create(schema_editor.connection.schema_name, trgm_in)


def drop_index(apps, schema_editor):
    url_search_index.drop(schema_editor.connection.schema_name)


class Migration(migrations.Migration):
    dependencies = [
        ("products", "0005_product_json_state"),
    ]

    operations = [migrations.RunPython(create_index, drop_index)]
