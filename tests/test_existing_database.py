"""The README runbook's step 0 and first migrate_images, for a database that already holds seller schemas with a legacy
products table."""

import json
from io import StringIO

from django.core.management import call_command

from tests.helpers import entries, run_command, run_sql

LEGACY_SCHEMA = "user_77"


def test_register_existing_schemas_then_fake_initial_then_migrate_images(db, tmp_path):
    run_sql("CREATE SCHEMA {schema}", schema=LEGACY_SCHEMA)
    run_sql(
        "CREATE TABLE {products} (id serial PRIMARY KEY, title text, images jsonb, "
        "created_at timestamptz NOT NULL DEFAULT now(), updated_at timestamptz NOT NULL DEFAULT now(), "
        "deleted_at timestamptz)",
        schema=LEGACY_SCHEMA,
    )
    run_sql(
        "INSERT INTO {products} (title, images) VALUES ('a', %(a)s), ('b', %(b)s)",
        {"a": json.dumps(entries(3)), "b": json.dumps(entries(1))},
        schema=LEGACY_SCHEMA,
    )
    out = StringIO()

    call_command("register_tenants", "--dry-run", stdout=out)
    assert "Would register: user_77" in out.getvalue()
    call_command("register_tenants", stdout=out)
    assert "Registered: user_77" in out.getvalue()
    call_command("migrate_schemas", "--tenant", "--fake-initial", schema_name=LEGACY_SCHEMA, verbosity=0)

    code, report, output = run_command("--schema", LEGACY_SCHEMA, tmp_path=tmp_path)
    assert code == 0, output
    assert report["tenants"][0]["run"]["images_migrated"] == 4
    assert report["tenants"][0]["run"]["labels_detected"] == 1
