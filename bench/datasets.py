"""The benchmark's data sets: the seed report's catalogue scaled up, and many small tenants.

Each set lives in tenants of its own (``bench_1x``, ``bench_30x``, ...), in the
benchmark's own database, and is built once: a later run finds it and reuses it.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.core.management import call_command
from django.db import transaction
from psycopg import sql

from products.demo import SEED_DISTRIBUTION, demo_image_counts, fill_products
from stoflow.raw_sql import execute, fetch_rows, table
from stoflow.tenants.models import Tenant
from stoflow.tenants.services import ensure_public_tenant, ensure_tenant, register_existing_schemas

FAN_OUT_PREFIX = "bench_fan_"


@dataclass(frozen=True)
class DataSet:
    name: str
    schemas: list[str]
    image_counts: list[int]  # images per product, the same in every schema of the set

    @property
    def products(self) -> int:
        return len(self.schemas) * len(self.image_counts)

    @property
    def images(self) -> int:
        return len(self.schemas) * sum(self.image_counts)


def scaled_set(factor: int) -> DataSet:
    """The seed catalogue (3,281 products, 19,607 images) times ``factor``, in one tenant."""
    distribution = {images: products * factor for images, products in SEED_DISTRIBUTION.items()}
    return DataSet(f"{factor}x", [f"bench_{factor}x"], demo_image_counts(distribution))


def fan_out_set(tenants: int = 1000, products: int = 20) -> DataSet:
    """Many small tenants, each holding the first ``products`` products of the seed catalogue."""
    schemas = [f"{FAN_OUT_PREFIX}{number:04d}" for number in range(1, tenants + 1)]
    return DataSet(f"{tenants} tenants x {products}", schemas, demo_image_counts()[:products])


def prepare_database() -> None:
    call_command("migrate_schemas", "--shared", interactive=False, verbosity=0)
    ensure_public_tenant()


def ensure_data_set(data_set: DataSet) -> bool:
    """Build the set unless it is already there, whole and migrated; True when it was built."""
    template, *copies = data_set.schemas
    if not ensure_tenant(template):
        # A set built before a tenant migration: the template gets it; its copies are made again below.
        call_command("migrate_schemas", "--schema", template, interactive=False, verbosity=0)
    outdated = _behind_template(template, copies)
    if not outdated and _is_complete(data_set):
        return False
    # Creating a tenant runs every migration (about a second each); copying the
    # template's tables takes milliseconds, which matters for a thousand tenants.
    existing = set(Tenant.objects.filter(schema_name__in=copies).values_list("schema_name", flat=True))
    template_tables = _tables(template)
    for schema in outdated:
        with transaction.atomic():
            execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
    for schema in copies:
        # A copy made before a migration added a table lacks it: the tables it lacks are copied too.
        missing = [name for name in template_tables if name not in _tables(schema)]
        if schema in existing and not missing:
            continue
        # One transaction each: a thousand schemas in one would exhaust the lock table.
        with transaction.atomic():
            copy_tenant_tables(template, schema, missing)
            if schema not in existing:
                register_existing_schemas([schema])
    for schema in data_set.schemas:
        execute(
            sql.SQL("TRUNCATE {}, {} RESTART IDENTITY").format(
                table(schema, "product_images"), table(schema, "products")
            )
        )
        fill_products(schema, data_set.image_counts)
        execute(sql.SQL("ANALYZE {}").format(table(schema, "products")))
    return True


def _behind_template(template: str, copies: list[str]) -> list[str]:
    """The copies whose migration records are not the template's (made before a tenant migration: a column
    they lack would fail the command), dropped and made again by the caller."""
    if not copies:
        return []
    rows = fetch_rows(
        sql.SQL(
            "SELECT n.nspname FROM pg_namespace AS n WHERE n.nspname = ANY(%(copies)s) "
            "AND to_regclass(format('%%I.django_migrations', n.nspname)) IS NOT NULL"
        ),
        {"copies": copies},
    )
    wanted = {
        name
        for (name,) in fetch_rows(
            sql.SQL("SELECT app || '.' || name FROM {}").format(table(template, "django_migrations"))
        )
    }
    behind = []
    for (schema,) in rows:
        applied = {
            name
            for (name,) in fetch_rows(
                sql.SQL("SELECT app || '.' || name FROM {}").format(table(schema, "django_migrations"))
            )
        }
        if applied != wanted:
            behind.append(schema)
    return behind


def _is_complete(data_set: DataSet) -> bool:
    registered = Tenant.objects.filter(schema_name__in=data_set.schemas).count()
    if registered != len(data_set.schemas):
        return False
    ((tables,),) = fetch_rows(
        sql.SQL("SELECT count(*) FROM pg_tables WHERE schemaname = ANY(%(schemas)s)"), {"schemas": data_set.schemas}
    )
    if tables != len(data_set.schemas) * len(_tables(data_set.schemas[0])):
        return False
    counts = sql.SQL(" UNION ALL ").join(
        sql.SQL("SELECT count(*) FROM {}").format(table(schema, "products")) for schema in data_set.schemas
    )
    total = fetch_rows(sql.SQL("SELECT sum(count) FROM ({}) AS counts").format(counts))[0][0]
    return total == data_set.products


def _tables(schema: str) -> list[str]:
    rows = fetch_rows(
        sql.SQL("SELECT tablename FROM pg_tables WHERE schemaname = %(schema)s ORDER BY tablename"), {"schema": schema}
    )
    return [name for (name,) in rows]


def copy_tenant_tables(template: str, schema: str, tables: list[str]) -> None:
    """The template's ``tables`` in ``schema`` (created if new), with their constraints and indexes, and
    product_images' foreign key to products; the template's migration records."""
    names = {"new": sql.Identifier(schema), "template": sql.Identifier(template)}
    execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {new}").format(**names))
    for name in tables:
        execute(
            sql.SQL("CREATE TABLE {new}.{table} (LIKE {template}.{table} INCLUDING ALL)").format(
                table=sql.Identifier(name), **names
            )
        )
    if "product_images" in tables:
        # LIKE copies no foreign key: add Django's, deferred as Django makes it.
        execute(
            sql.SQL(
                "ALTER TABLE {new}.product_images ADD CONSTRAINT product_images_product_id_fk "
                "FOREIGN KEY (product_id) REFERENCES {new}.products (id) DEFERRABLE INITIALLY DEFERRED"
            ).format(**names)
        )
    # The copy's tables are the template's migrations' now.
    execute(sql.SQL("DELETE FROM {new}.django_migrations").format(**names))
    execute(sql.SQL("INSERT INTO {new}.django_migrations SELECT * FROM {template}.django_migrations").format(**names))
