"""The migration beside live edits: a batch waits for a product another session is changing, then reads its JSON."""

import threading

from django.db import connections

from products.migration.report import ExitCode
from tests.helpers import (
    TENANT,
    entries,
    image_rows,
    join_all,
    make_product,
    other_session,
    run_command,
    tenant_sql,
    wait_until_blocked_by,
)

# What the image service does for set_label(first image): the product row locked first, then the image
# moved last as the label and the JSON mirror rewritten from the rows.
SET_FIRST_IMAGE_AS_LABEL = [
    'UPDATE {images} SET is_label = false, "order" = "order" + 100 WHERE product_id = %(id)s',
    'UPDATE {images} SET "order" = CASE WHEN url = %(url)s THEN 3 ELSE "order" - 100 - 1 END, '
    "is_label = (url = %(url)s) WHERE product_id = %(id)s",
    "UPDATE {products} SET images = (SELECT jsonb_agg(jsonb_build_object('url', url, 'order', \"order\", "
    "'created_at', created_at, 'is_label', is_label) ORDER BY \"order\") FROM {images} WHERE product_id = %(id)s) "
    "WHERE id = %(id)s",
]


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

    run = threading.Thread(target=force_run)
    with other_session() as editor, editor.transaction():
        editor.execute(tenant_sql("SELECT 1 FROM {products} WHERE id = %(id)s FOR UPDATE"), {"id": product.pk})
        run.start()
        wait_until_blocked_by(editor.info.backend_pid)
        for statement in SET_FIRST_IMAGE_AS_LABEL:
            editor.execute(tenant_sql(statement), {"id": product.pk, "url": first_url})
        assert run.is_alive(), "the --force run did not wait for the product being edited"
    join_all([run])

    assert codes == [ExitCode.OK]
    rows = [(order, is_label, url) for order, is_label, url, _ in image_rows(product.pk)]
    assert rows[-1] == (3, True, first_url)
    assert sum(is_label for _, is_label, _ in rows) == 1
