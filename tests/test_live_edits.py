"""The migration beside live edits: a batch waits for a product another session is changing, then reads its JSON."""

import threading
import time

import psycopg
from django.db import connection, connections
from psycopg import sql

from products.migration.report import ExitCode
from tests.helpers import TENANT, entries, image_rows, make_product, run_command

WAIT_SECONDS = 20  # nothing here should take a fraction of that; past it the test fails instead of hanging


def _wait_until_blocked_by(pid: int) -> int:
    """The pid of the backend waiting for a lock ``pid`` holds (polled on a connection of its own)."""
    deadline = time.monotonic() + WAIT_SECONDS
    with psycopg.connect(**connection.get_connection_params(), autocommit=True) as watcher:
        while time.monotonic() < deadline:
            row = watcher.execute(
                "SELECT pid FROM pg_stat_activity WHERE %(pid)s = ANY(pg_blocking_pids(pid))", {"pid": pid}
            ).fetchone()
            if row:
                return row[0]
            time.sleep(0.05)
    raise AssertionError(f"no backend waited for a lock of backend {pid} within {WAIT_SECONDS} s")


def test_a_force_run_waits_for_a_product_being_edited_and_keeps_the_edit(committed_db):
    product = make_product(images=entries(3))
    assert run_command("--schema", TENANT)[0] == ExitCode.OK
    first_url = image_rows(product.pk)[0][2]
    codes = []

    def force_run():
        try:
            codes.append(run_command("--schema", TENANT, "--force")[0])
        finally:
            connections.close_all()

    with psycopg.connect(**connection.get_connection_params(), options="-c lock_timeout=20s") as editor:
        # What the image service does for set_label(first image): lock the product, move the
        # image last as the label, rewrite the JSON mirror from the rows; committed later.
        editor.execute(
            sql.SQL("SELECT 1 FROM {} WHERE id = %(id)s FOR UPDATE").format(sql.Identifier(TENANT, "products")),
            {"id": product.pk},
        )
        run = threading.Thread(target=force_run)
        run.start()
        blocked = _wait_until_blocked_by(editor.info.backend_pid)
        images = sql.Identifier(TENANT, "product_images")
        editor.execute(
            sql.SQL(
                'UPDATE {images} SET is_label = false, "order" = "order" + 100 WHERE product_id = %(id)s;'
                'UPDATE {images} SET "order" = CASE WHEN url = %(url)s THEN 3 ELSE "order" - 100 - 1 END, '
                "is_label = (url = %(url)s) WHERE product_id = %(id)s;"
                "UPDATE {products} SET images = (SELECT jsonb_agg(jsonb_build_object("
                "'url', url, 'order', \"order\", 'created_at', created_at, 'is_label', is_label) ORDER BY \"order\") "
                "FROM {images} WHERE product_id = %(id)s) WHERE id = %(id)s"
            ).format(images=images, products=sql.Identifier(TENANT, "products")),
            {"id": product.pk, "url": first_url},
        )
        assert run.is_alive(), "the --force run did not wait for the product being edited"
        editor.commit()
    run.join(WAIT_SECONDS)
    assert not run.is_alive(), f"the --force run did not finish within {WAIT_SECONDS} s"

    assert blocked != 0
    assert codes == [ExitCode.OK]
    rows = image_rows(product.pk)
    assert [(order, is_label, url) for order, is_label, url, _ in rows][-1] == (3, True, first_url)
    assert sum(is_label for _, is_label, _, _ in rows) == 1
