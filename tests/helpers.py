"""What tests share: the test tenants, product and entry builders, raw SQL in a tenant, running the command,
a second database session, the time limits every wait in a test is held to, and reading the docs."""

import json
import os
import re
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from io import StringIO
from pathlib import Path

import psycopg
import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.urls import reverse
from django_tenants.utils import schema_context
from psycopg import sql
from psycopg.types.json import Jsonb

from products.migration import batches
from products.models import ProductImage
from stoflow.database_settings import connection_kwargs
from stoflow.raw_sql import execute, fetch_rows
from stoflow.tenants.citus import is_citus
from stoflow.tenants.locks import ADVISORY_LOCK_NAMESPACE, LOCK_KEY_SQL
from stoflow.tenants.models import LedgerEntry
from tests.factories import ProductFactory, write_json

TENANT = "tenant_a"
OTHER_TENANT = "tenant_b"
TEST_TENANTS = [TENANT, OTHER_TENANT]

# No test waits for ever: a session of the tests gives up on a lock, and on a statement, after these
# (the tests' own connections, Django's included; see conftest), and threads and subprocesses are waited
# for at most WAIT_SECONDS. pytest-timeout (pyproject) is the backstop for anything else.
LOCK_TIMEOUT = "10s"
STATEMENT_TIMEOUT = "60s"
SESSION_OPTIONS = f"-c lock_timeout={LOCK_TIMEOUT} -c statement_timeout={STATEMENT_TIMEOUT}"
WAIT_SECONDS = 60


def make_product(schema: str = TENANT, **fields):
    with schema_context(schema):
        return ProductFactory(**fields)


def set_json(product_id: int, images, schema: str = TENANT) -> None:
    """Rewrite a product's legacy JSON (None: SQL NULL): raw SQL, as the column is outside the ORM."""
    write_json(schema, product_id, images)


def entries(count: int, first_order: int = 1) -> list[dict]:
    """``count`` image entries in the legacy shape, orders from ``first_order``."""
    return [
        {
            "url": f"https://cdn.example/{first_order + i}-{i}.jpeg",
            "order": first_order + i,
            "created_at": f"2025-03-0{1 + i % 9}T10:00:0{i % 10}Z",
        }
        for i in range(count)
    ]


# Raw SQL in a tenant: the one way tests run SQL of their own.


def tenant_sql(statement: str, schema: str = TENANT, **names: str | sql.Composable) -> sql.Composed:
    """``statement`` with ``{images}``, ``{products}`` and ``{schema}`` as the tenant's quoted identifiers.

    Any other ``{name}`` comes from ``names``: a string goes in as a quoted identifier, a psycopg
    composable (``sql.Literal``, ``sql.SQL``) as it is. Values belong in parameters, never in the text.
    """
    fields = {
        "images": sql.Identifier(schema, "product_images"),
        "products": sql.Identifier(schema, "products"),
        "schema": sql.Identifier(schema),
    }
    for key, value in names.items():
        fields[key] = value if isinstance(value, sql.Composable) else sql.Identifier(value)
    return sql.SQL(statement).format(**fields)


def run_sql(statement: str, params: dict | None = None, *, schema: str = TENANT, **names) -> None:
    """Run a statement that returns no rows (see ``tenant_sql`` for the placeholders)."""
    execute(tenant_sql(statement, schema, **names), params)


def sql_rows(statement: str, params: dict | None = None, *, schema: str = TENANT, **names) -> list[tuple]:
    """Run a query (see ``tenant_sql`` for the placeholders) and return its rows."""
    return fetch_rows(tenant_sql(statement, schema, **names), params)


def sql_value(statement: str, params: dict | None = None, *, schema: str = TENANT, **names):
    """The single value a query returns."""
    [(value,)] = sql_rows(statement, params, schema=schema, **names)
    return value


def store_json(product_id: int, images, schema: str = TENANT) -> None:
    """Write a product's legacy ``images`` JSON (None: SQL NULL), as the old code path still does."""
    run_sql(
        "UPDATE {products} SET images = %(images)s WHERE id = %(id)s",
        {"images": None if images is None else Jsonb(images), "id": product_id},
        schema=schema,
    )


def verbatim_rows(text: str) -> list[tuple]:
    """SQL text run exactly as written, as a reader pastes it into psql: no placeholders, no parameters.

    Only for SQL a test means to run unchanged (a report's queries, the seed report's); a test's own SQL
    goes through ``run_sql``/``sql_rows``.
    """
    with connection.cursor() as cursor:
        cursor.execute(text)
        return cursor.fetchall()


def image_rows(product_id: int, schema: str = TENANT) -> list[tuple]:
    """The product's rows as (order, is_label, url, created_at), by order."""
    return sql_rows(
        'SELECT "order", is_label, url, created_at FROM {images} WHERE product_id = %(id)s ORDER BY "order"',
        {"id": product_id},
        schema=schema,
    )


def image_rows_with_ids(product_id: int, schema: str = TENANT) -> list[tuple]:
    """The product's rows as (id, url, order, is_label), by order: what keeping ids is checked on."""
    return sql_rows(
        'SELECT id, url, "order", is_label FROM {images} WHERE product_id = %(id)s ORDER BY "order"',
        {"id": product_id},
        schema=schema,
    )


def table_state(schema: str) -> list[tuple]:
    """Every image row but its id and updated_at: what a clean run and a resumed run must agree on."""
    return sql_rows(
        'SELECT dense_rank() OVER (ORDER BY i.product_id), i."order", i.is_label, i.url, i.created_at '
        'FROM {images} AS i ORDER BY i.product_id, i."order"',
        schema=schema,
    )


# Another session, threads: waits with an end.


@contextmanager
def other_session() -> Iterator[psycopg.Connection]:
    """A second session on the test database, in autocommit: it sees only what is committed.

    Its waits are bounded (SESSION_OPTIONS): a lock another session leaked fails the test, it does not hang it.
    """
    settings = connection.settings_dict
    # Its own options in place of the settings' (SESSION_OPTIONS bound the waits).
    server = connection_kwargs(settings) | {"options": SESSION_OPTIONS}
    with psycopg.connect(**server, dbname=settings["NAME"], autocommit=True, connect_timeout=WAIT_SECONDS) as session:
        yield session


@contextmanager
def tenant_locked_elsewhere(schema: str) -> Iterator[None]:
    """Hold ``schema``'s advisory lock (the one migrate_images takes) in another session, as a concurrent run would."""
    key = sql.SQL("SELECT pg_advisory_lock({key})").format(key=sql.SQL(LOCK_KEY_SQL))
    with other_session() as holder:
        try:
            holder.execute(key, {"namespace": ADVISORY_LOCK_NAMESPACE, "schema": schema})
        except psycopg.errors.LockNotAvailable:
            pytest.fail(f"{schema}'s advisory lock is already held by another session (leaked by an earlier test?)")
        yield


# Who waits for a lock backend %(pid)s holds; on Citus the wait is on a worker, where the coordinator's
# pg_blocking_pids does not look (the waiter named by its session's pid on the coordinator).
_WAITING_FOR = {
    False: "SELECT pid FROM pg_stat_activity WHERE %(pid)s = ANY(pg_blocking_pids(pid))",
    True: "SELECT citus_pid_for_gpid(waiting_gpid) FROM citus_lock_waits "
    "WHERE citus_pid_for_gpid(blocking_gpid) = %(pid)s",
}


def wait_until_blocked_by(pid: int) -> int:
    """The pid of a backend waiting for a lock backend ``pid`` holds (polled from a session of its own)."""
    deadline = time.monotonic() + WAIT_SECONDS
    with other_session() as watcher:
        # Asked on this session: callers poll from threads of their own, where Django's connection is not to open.
        ((citus,),) = watcher.execute("SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus')").fetchall()
        query = _WAITING_FOR[citus]
        while time.monotonic() < deadline:
            row = watcher.execute(query, {"pid": pid}).fetchone()
            if row:
                return row[0]
            time.sleep(0.05)
    raise AssertionError(f"no backend waited for a lock of backend {pid} within {WAIT_SECONDS} s")


def plant_failing_insert(schema: str, url_fragment: str, name: str = "refuse_image") -> None:
    """A trigger ``name`` that makes the database refuse any image row whose url contains ``url_fragment``.

    The preflight refuses a tenant with a trigger it does not know: runs meant to meet it pass ``--allow name``."""
    # The fragment reaches the function as the trigger's argument (TG_ARGV), a quoted literal.
    plant_insert_trigger(
        schema,
        name,
        "IF strpos(NEW.url, TG_ARGV[0]) > 0 THEN RAISE EXCEPTION USING MESSAGE = 'planted failure for ' || NEW.url; "
        "END IF; RETURN NEW;",
        url_fragment,
    )


def plant_insert_trigger(schema: str, name: str, body: str, argument: str = "") -> None:
    """A trigger ``name`` before each insert into the tenant's product_images, running the PL/pgSQL ``body``.

    On Citus the trigger fires on the tenant's worker: its function goes in the tenant's schema, which Citus
    creates there too (pg_temp is this session's, on the coordinator), and Citus takes a trigger on a distributed
    table only with citus.enable_unsafe_triggers. The tests that plant one roll back, function and trigger with it."""
    on_citus = is_citus()
    function = sql.Identifier(schema if on_citus else "pg_temp", name)
    if on_citus:
        run_sql("SET LOCAL citus.enable_unsafe_triggers = on")
    run_sql(
        "CREATE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS {body}",
        function=function,
        body=sql.Literal(f"BEGIN {body} END"),
    )
    run_sql(
        "CREATE TRIGGER {name} BEFORE INSERT ON {images} FOR EACH ROW EXECUTE FUNCTION {function}({arg})",
        schema=schema,
        name=name,
        function=function,
        arg=sql.Literal(argument),
    )


def manage_py_environment() -> dict[str, str]:
    """The environment for a ``manage.py`` subprocess working on the tests' database (the same server)."""
    connection.ensure_connection()
    return {**os.environ, "STOFLOW_DATABASE_NAME": connection.settings_dict["NAME"]}


def public_url(name: str, *args) -> str:
    """A page of the public site (outside /sellers/), e.g. ``admin:login``."""
    return reverse(name, args=args, urlconf=settings.PUBLIC_SCHEMA_URLCONF)


def ledger_entries(schema: str = TENANT) -> list[dict]:
    """The run ledger's entries for ``schema``, oldest first (as this session sees them)."""
    return list(LedgerEntry.objects.filter(schema_name=schema).order_by("started_at", "pk").values())


def join_all(threads: list[threading.Thread], timeout: float = WAIT_SECONDS) -> None:
    """Wait for every thread, ``timeout`` seconds at most in all; fail naming the ones still running."""
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(timeout=max(0.0, deadline - time.monotonic()))
    stuck = [thread.name for thread in threads if thread.is_alive()]
    assert not stuck, f"still running after {timeout} s: {', '.join(stuck)}"


def run_command(*args: str, tmp_path: Path | None = None) -> tuple[int, dict | None, str]:
    """Run migrate_images; returns (exit code, JSON report or None, terminal output)."""
    out, err = StringIO(), StringIO()
    argv = list(args)
    json_path = None
    if tmp_path is not None:
        json_path = tmp_path / "report.json"
        argv += ["--json", str(json_path)]
    try:
        call_command("migrate_images", *argv, "--no-input", stdout=out, stderr=err)
        code = 0
    except CommandError as exc:
        code = exc.returncode
        err.write(str(exc))
    report = json.loads(json_path.read_text()) if json_path and json_path.exists() else None
    return code, report, out.getvalue() + err.getvalue()


def migrated_product(count: int, first_order: int = 1, schema: str = TENANT):
    """A product as migrate_images leaves it: legacy JSON entries and their rows, the last one the label
    when there are two or more."""
    items = entries(count, first_order)
    product = make_product(schema, images=items)
    with schema_context(schema):
        ProductImage.objects.bulk_create(
            ProductImage(
                product=product,
                url=item["url"],
                order=item["order"],
                is_label=count >= 2 and position == count - 1,
                created_at=datetime.fromisoformat(item["created_at"]),
            )
            for position, item in enumerate(items)
        )
    return product


def image_ids(product_id: int, schema: str = TENANT) -> list[int]:
    """The product's image ids, by order."""
    with schema_context(schema):
        return list(ProductImage.objects.filter(product_id=product_id).order_by("order").values_list("pk", flat=True))


def image_state(product_id: int, schema: str = TENANT) -> tuple[list[tuple], object]:
    """Everything a refused call must leave alone: the product's rows, every column, and its legacy JSON."""
    rows = sql_rows(
        'SELECT id, "order", is_label, url, created_at, updated_at FROM {images} WHERE product_id = %(id)s '
        'ORDER BY "order"',
        {"id": product_id},
        schema=schema,
    )
    return rows, json_images(product_id, schema)


def json_images(product_id: int, schema: str = TENANT) -> object:
    """The product's legacy images JSON, parsed."""
    text = sql_value("SELECT images::text FROM {products} WHERE id = %(id)s", {"id": product_id}, schema=schema)
    return None if text is None else json.loads(text)


def json_from_rows(product_id: int, schema: str = TENANT) -> list[dict]:
    """What the image service's JSON mirror must hold for the product, computed here from its rows."""
    return [
        {"url": url, "order": order, "created_at": iso_utc(created_at), "is_label": is_label}
        for order, is_label, url, created_at in image_rows(product_id, schema)
    ]


def iso_utc(moment: datetime) -> str:
    """ "YYYY-MM-DDTHH:MM:SS[.ffffff]Z", the fraction only when there is one."""
    moment = moment.astimezone(UTC)
    fraction = f".{moment.microsecond:06d}" if moment.microsecond else ""
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + fraction + "Z"


def run_lifecycle(command: str, *args: str, no_input: bool = True) -> tuple[int, str]:
    """Run finalize_images or restore_images_json (with ``--no-input`` unless told not to): (exit code, output)."""
    out, err = StringIO(), StringIO()
    argv = [*args, "--no-input"] if no_input else list(args)
    try:
        call_command(command, *argv, stdout=out, stderr=err)
        code = 0
    except CommandError as exc:
        code = exc.returncode
        err.write(str(exc))
    return code, out.getvalue() + err.getvalue()


def json_text(product_id: int, schema: str = TENANT) -> str | None:
    """The product's legacy JSON as PostgreSQL prints it (None: SQL NULL); the column must be there."""
    return sql_value("SELECT images::text FROM {products} WHERE id = %(id)s", {"id": product_id}, schema=schema)


def ctrl_c_at_batch(monkeypatch, number: int) -> list[tuple]:
    """A real Ctrl-C (SIGINT, whichever thread the kernel hands it to) when the ``number``-th batch is written,
    and slow batches from then on, so no worker can finish before the signal is handled; the list the batches'
    arguments are recorded in."""
    write_batch = batches._write_batch
    written = []

    def interrupting(*args, **kwargs):
        written.append(args)
        if len(written) == number:
            os.kill(os.getpid(), signal.SIGINT)
        if len(written) >= number:
            time.sleep(0.3)
        return write_batch(*args, **kwargs)

    monkeypatch.setattr(batches, "_write_batch", interrupting)
    return written


def doc_section(path: str, heading: str) -> str:
    """The text under the heading line ``heading`` (``"## Exit status"``) of a Markdown file of the checkout
    (``"docs/migrate_images.md"``), up to the next heading of the same level or above."""
    text = "\n" + (Path(settings.BASE_DIR) / path).read_text()  # a heading on the first line too
    assert f"\n{heading}\n" in text, f"{path} has no heading {heading!r}"
    body = text.split(f"\n{heading}\n", 1)[1]
    level = len(heading) - len(heading.lstrip("#"))
    return re.split(rf"^#{{1,{level}}} ", body, maxsplit=1, flags=re.MULTILINE)[0]


def exit_status_table(section: str) -> dict[int, str]:
    """A documented exit status table's rows, ``| code | meaning |``: {code: meaning}."""
    return {int(code): meaning for code, meaning in re.findall(r"^\| (\d+) \| (.+) \|$", section, flags=re.MULTILINE)}


# Reports kept as they must stay (tests/golden/): speed work must leave every byte of what a first backfill's
# report says as it is (issue 21). When a report changes on purpose, STOFLOW_WRITE_GOLDEN=1 has the test rewrite
# its file, to be read in the diff before it is committed.
GOLDEN = Path(__file__).parent / "golden"


def without_run_details(markdown: str) -> str:
    """A Markdown report with its date, its phases' seconds and its queries' SQL replaced by placeholders: what the
    report says (figures, lists, messages, the checks' results) is kept, the code that found it is not (speed work
    rewrites the SQL, and the URL rule's patterns in it come from the Unicode tables of the running Python)."""
    markdown = re.sub(r"^\*\*Date:\*\* .+$", "**Date:** DATE", markdown, flags=re.MULTILINE)
    markdown = re.sub(r"^```sql\n.*?^```$", "```sql\nQUERY\n```", markdown, flags=re.MULTILINE | re.DOTALL)
    return re.sub(r"^(- \*\*[a-z ]+:\*\*) [0-9.]+ s$", r"\1 SECONDS s", markdown, flags=re.MULTILINE)


def assert_golden_report(markdown: str, golden: Path) -> None:
    """``markdown`` is, but for its run details, the report kept in ``golden``."""
    report = without_run_details(markdown)
    if os.environ.get("STOFLOW_WRITE_GOLDEN") == "1":
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(report)
    assert report == golden.read_text(), f"the report differs from {golden.name} (STOFLOW_WRITE_GOLDEN=1 rewrites it)"
