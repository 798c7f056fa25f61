"""The follower: legacy JSON writes reach the rows in the writer's own transaction (products.migration.follower)."""

import threading
import time

import pytest
from django_tenants.utils import schema_context
from psycopg import sql
from psycopg.types.json import Jsonb

from products import images
from products.migration import follower
from products.selectors import listing_photos
from tests.helpers import (
    TENANT,
    entries,
    image_rows_with_ids,
    join_all,
    json_from_rows,
    json_images,
    make_product,
    other_session,
    run_command,
    run_lifecycle,
    run_sql,
    sql_rows,
    sql_value,
    store_json,
)


def test_an_old_convention_write_reaches_the_rows_keeping_ids(committed_db):
    product = make_product(images=entries(3))
    assert run_command("--schema", TENANT)[0] == 0
    follower.install(TENANT)
    before = {url: image_id for image_id, url, _, _ in image_rows_with_ids(product.pk)}
    photos = entries(3) + [{"url": "https://cdn.example/price-tag.jpeg", "order": 7}]

    store_json(product.pk, photos)

    after = image_rows_with_ids(product.pk)
    assert [(url, label) for _, url, _, label in after][-1] == ("https://cdn.example/price-tag.jpeg", True)
    assert {url: image_id for image_id, url, _, _ in after if url in before} == before
    with schema_context(TENANT):
        assert "https://cdn.example/price-tag.jpeg" not in listing_photos(product.pk, "ebay")
    assert follower.installed_version(TENANT) == follower.version()
    assert follower.describe(TENANT) == "on"


def test_a_mixed_write_keeps_the_rows_and_holds_the_product(committed_db):
    product = make_product(images=entries(3))
    assert run_command("--schema", TENANT)[0] == 0
    follower.install(TENANT)
    before = image_rows_with_ids(product.pk)
    keyed = [{**entry, "is_label": index == 2} for index, entry in enumerate(entries(3))]

    store_json(product.pk, keyed + [{"url": "https://cdn.example/price-tag.jpeg", "order": 9}])

    assert image_rows_with_ids(product.pk) == before
    refused = sql_value("SELECT refused FROM {schema}.product_json_state WHERE product_id = %(id)s", {"id": product.pk})
    assert "mix the two label conventions" in refused


# JSON text nested deeper than PostgreSQL's parser can follow: reading it raised "stack depth limit exceeded" in the
# writer's own UPDATE (pg_input_is_valid reports no such error softly). tests/test_migration_rules.py has the limit.
TOO_NESTED_ARRAY = "[" * 100_000 + "]" * 100_000
TOO_NESTED_ENTRY = '{"url": "https://cdn.example/x.jpg", "n": ' + TOO_NESTED_ARRAY + "}"


@pytest.mark.parametrize(
    "images",
    [
        pytest.param([TOO_NESTED_ENTRY, entries(1)[0]], id="entry"),
        pytest.param(TOO_NESTED_ARRAY, id="string"),
    ],
)
def test_json_text_too_nested_to_parse_keeps_the_rows_holds_the_product_and_the_writer_goes_on(tenant, images):
    product = make_product(images=entries(3))
    assert run_command("--schema", TENANT, "--follow")[0] == 0
    before = image_rows_with_ids(product.pk)

    store_json(product.pk, images)

    assert image_rows_with_ids(product.pk) == before
    assert "nested too deeply" in state(product.pk)[1]
    with schema_context(TENANT):
        assert listing_photos(product.pk, "vinted") == []


def test_json_text_nested_up_to_the_limit_is_followed(tenant):
    # As many braces as the guard lets through, parsed inside the writer's UPDATE (a deeper stack than a query's).
    deep = '{"a": ' * 9_999 + "1" + "}" * 9_999
    product = make_product(images=entries(2))
    assert run_command("--schema", TENANT, "--follow")[0] == 0
    photos = entries(2)[:1] + ['{"url": "https://cdn.example/deep.jpeg", "order": 5, "n": ' + deep + "}"]

    store_json(product.pk, photos)

    assert [(url, label) for _, url, _, label in image_rows_with_ids(product.pk)] == [
        (photos[0]["url"], False),
        ("https://cdn.example/deep.jpeg", True),
    ]
    assert state(product.pk) == (True, None)


def test_deleting_a_product_takes_its_rows_copied_aside(committed_db):
    product = make_product(images=entries(2))
    assert run_command("--schema", TENANT)[0] == 0
    follower.install(TENANT)

    run_sql("DELETE FROM {products} WHERE id = %(id)s", {"id": product.pk})

    assert image_rows_with_ids(product.pk) == []
    assert (
        sql_value("SELECT count(*) FROM {schema}.product_images_removed WHERE product_id = %(id)s", {"id": product.pk})
        == 2
    )


# How long the legacy writer keeps writing while --check runs again and again (the issue asks a minute of an
# operator; a few seconds hold hundreds of writes and dozens of checks here).
WRITING_SECONDS = 4


def test_check_stays_green_while_old_code_keeps_writing_json(committed_db):
    products = [make_product(images=entries(3)) for _ in range(5)]
    assert run_command("--schema", TENANT, "--follow")[0] == 0
    writes, stop = [0], threading.Event()

    def legacy_writer():
        # The old code path: its own session, its own commits, the old convention (no is_label).
        with other_session() as session:
            while not stop.is_set():
                product = products[writes[0] % len(products)]
                count = 2 + writes[0] % 4
                session.execute(
                    sql.SQL("UPDATE {} SET images = %(images)s WHERE id = %(id)s").format(
                        sql.Identifier(TENANT, "products")
                    ),
                    {"images": Jsonb(entries(count, first_order=writes[0] % 3)), "id": product.pk},
                )
                writes[0] += 1

    writer = threading.Thread(target=legacy_writer)
    writer.start()
    checks = []
    try:
        deadline = time.monotonic() + WRITING_SECONDS
        while time.monotonic() < deadline:
            checks.append(run_command("--check", "--schema", TENANT))
    finally:
        stop.set()
        join_all([writer])

    assert writes[0] > 20 and len(checks) > 3
    assert [code for code, _, _ in checks] == [0] * len(checks), next(out for code, _, out in checks if code)
    # Nothing is left for --sync to do.
    code, report, _ = run_command("--sync", "--schema", TENANT, tmp_path=None)
    assert code == 0


def test_a_follower_of_another_version_is_named_by_the_run_and_by_status(committed_db):
    make_product(images=entries(2))
    assert run_command("--schema", TENANT, "--follow")[0] == 0
    # As another version of this code would have left it: same trigger, another text.
    run_sql("COMMENT ON FUNCTION {schema}.stoflow_follow_images() IS 'stoflow follower 0000000000000000'")

    code, report, output = run_command("--schema", TENANT, tmp_path=None)
    status = run_command("--status", "--schema", TENANT)[2]

    assert code == 0
    assert "follower outdated: run --follow again" in output
    assert "outdated: run --follow again" in " ".join(status.split())
    assert run_command("--schema", TENANT, "--follow")[0] == 0
    assert follower.describe(TENANT) == "on"


# --- what the follower covers (issue 19, point 3) ----------------------------------------------------------------


def state(product_id: int) -> tuple:
    """The product's product_json_state: (digest equals md5 of its JSON now, refused)."""
    return sql_rows(
        "SELECT st.json_digest IS NOT DISTINCT FROM md5(p.images::text)::uuid, st.refused "
        "FROM {products} AS p JOIN {schema}.product_json_state AS st ON st.product_id = p.id WHERE p.id = %(id)s",
        {"id": product_id},
    )[0]


def test_a_product_inserted_with_images_by_raw_sql_gets_its_rows(tenant):
    follower.install(TENANT)
    photos = entries(3)

    product_id = sql_value(
        "INSERT INTO {products} (title, created_at, updated_at, images) VALUES ('raw', now(), now(), %(images)s) "
        "RETURNING id",
        {"images": Jsonb(photos)},
    )

    assert [(url, order, label) for _, url, order, label in image_rows_with_ids(product_id)] == [
        (entry["url"], entry["order"], index == 2) for index, entry in enumerate(photos)
    ]
    assert state(product_id) == (True, None)


def test_a_soft_deleted_product_s_photos_are_still_followed(tenant):
    product = make_product(images=entries(3))
    assert run_command("--schema", TENANT, "--follow")[0] == 0
    before = image_rows_with_ids(product.pk)

    run_sql("UPDATE {products} SET deleted_at = now() WHERE id = %(id)s", {"id": product.pk})
    assert image_rows_with_ids(product.pk) == before  # soft-deleting is no write of images: nothing to follow
    photos = entries(3)[:2] + [{"url": "https://cdn.example/after-deletion.jpeg", "order": 8}]
    store_json(product.pk, photos)

    after = image_rows_with_ids(product.pk)
    assert [(url, label) for _, url, _, label in after] == [
        (entry["url"], index == 2) for index, entry in enumerate(photos)
    ]
    assert [image_id for image_id, *_ in after[:2]] == [image_id for image_id, *_ in before[:2]]
    assert run_command("--check", "--schema", TENANT)[0] == 0


# Products one app transaction updates: past the 64 subtransactions a backend caches, where an EXCEPTION block per
# row would overflow (and slow every session, standbys included).
MANY_PRODUCTS = 200
# Generous on a shared 2-core machine: about 1 ms a product was measured (bench/run.py --two-writers times it).
MANY_PRODUCTS_SECONDS = 10


def subtransactions_of(watcher, pid: int) -> tuple[int, bool]:
    """(subtransactions cached, overflowed) of backend ``pid``, as another session sees it."""
    return watcher.execute(
        "SELECT s.subxact_count, s.subxact_overflowed FROM pg_stat_get_backend_idset() AS b(id), "
        "LATERAL pg_stat_get_backend_subxact(b.id) AS s WHERE pg_stat_get_backend_pid(b.id) = %(pid)s",
        {"pid": pid},
    ).fetchone()


def test_an_app_transaction_over_many_products_is_followed_without_subtransactions(committed_db):
    products = [make_product(images=entries(2)) for _ in range(MANY_PRODUCTS)]
    assert run_command("--schema", TENANT, "--follow")[0] == 0
    update = sql.SQL("UPDATE {} SET images = %(images)s WHERE id = ANY(%(ids)s)").format(
        sql.Identifier(TENANT, "products")
    )
    ids = [product.pk for product in products]
    timings = {}
    with other_session() as app, other_session() as watcher:
        # One statement over every product, then one statement per product, each in one transaction.
        for how, statements in (
            ("one statement", [(entries(3), ids)]),
            ("a statement each", [(entries(4), [product_id]) for product_id in ids]),
        ):
            started = time.perf_counter()
            with app.transaction():
                for images, some in statements:
                    app.execute(update, {"images": Jsonb(images), "ids": some})
                assert subtransactions_of(watcher, app.info.backend_pid) == (0, False), how
            timings[how] = time.perf_counter() - started
            count = len(images)
            assert (
                sql_value("SELECT count(*) FROM {images} WHERE product_id = ANY(%(ids)s)", {"ids": ids})
                == count * MANY_PRODUCTS
            ), how
            assert (
                sql_value(
                    'SELECT count(*) FROM {images} WHERE product_id = ANY(%(ids)s) AND is_label AND "order" = %(last)s',
                    {"ids": ids, "last": count},
                )
                == MANY_PRODUCTS
            ), how
    assert all(seconds < MANY_PRODUCTS_SECONDS for seconds in timings.values()), timings
    assert run_command("--check", "--schema", TENANT)[0] == 0


@pytest.mark.parametrize("action", ["NO ACTION", "RESTRICT"])
def test_a_write_dropping_a_photo_another_table_points_at_is_refused_and_the_writer_goes_on(tenant, action):
    product = make_product(images=entries(3))
    assert run_command("--schema", TENANT, "--follow")[0] == 0
    run_sql(
        "CREATE TABLE {schema}.uploads (id bigserial PRIMARY KEY, "
        "image_id bigint NOT NULL REFERENCES {images}(id) ON DELETE {action})",
        action=sql.SQL(action),
    )
    before = image_rows_with_ids(product.pk)
    uploaded_id = before[0][0]
    run_sql("INSERT INTO {schema}.uploads (image_id) VALUES (%(id)s)", {"id": uploaded_id})

    store_json(product.pk, entries(3)[1:])  # the uploaded photo left the JSON: its row cannot go

    assert image_rows_with_ids(product.pk) == before
    json_follows, refused = state(product.pk)
    assert json_follows  # the refused JSON is the one recorded
    assert refused == (
        f"its JSON drops 1 photo(s) that 1 row(s) of {TENANT}.uploads(image_id) point at (ON DELETE {action}): "
        "rows kept"
    )
    with schema_context(TENANT):
        assert listing_photos(product.pk, "ebay") == []  # held back
    # Once the JSON keeps the photo again, the product follows and is sent again.
    store_json(product.pk, entries(3)[:1] + entries(3)[2:])
    assert [image_id for image_id, *_ in image_rows_with_ids(product.pk)] == [before[0][0], before[2][0]]
    assert state(product.pk) == (True, None)
    with schema_context(TENANT):
        assert listing_photos(product.pk, "ebay") == [entries(3)[0]["url"]]


def test_a_photo_another_table_points_at_with_on_delete_cascade_is_removed_with_its_references(tenant):
    product = make_product(images=entries(3))
    assert run_command("--schema", TENANT, "--follow")[0] == 0
    run_sql(
        "CREATE TABLE {schema}.uploads (id bigserial PRIMARY KEY, "
        "image_id bigint NOT NULL REFERENCES {images}(id) ON DELETE CASCADE)"
    )
    run_sql(
        "INSERT INTO {schema}.uploads (image_id) SELECT id FROM {images} WHERE product_id = %(id)s", {"id": product.pk}
    )

    store_json(product.pk, entries(3)[1:])

    assert [url for _, url, _, _ in image_rows_with_ids(product.pk)] == [entry["url"] for entry in entries(3)[1:]]
    assert state(product.pk) == (True, None)
    assert sql_value("SELECT count(*) FROM {schema}.uploads") == 2


def log_image_writes() -> None:
    """Every write of product_images from here on, logged in the tenant's image_writes (the test's transaction
    drops both): (image id, operation, whether updated_at changed)."""
    run_sql("CREATE TABLE {schema}.image_writes (image_id bigint, operation text, updated_at_changed boolean)")
    run_sql(
        "CREATE FUNCTION {schema}.log_image_write() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "INSERT INTO {log} VALUES (COALESCE(NEW.id, OLD.id), TG_OP, "
        "TG_OP = 'UPDATE' AND NEW.updated_at IS DISTINCT FROM OLD.updated_at); RETURN NULL; END $$",
        log=sql.Identifier(TENANT, "image_writes"),
    )
    run_sql(
        "CREATE TRIGGER log_image_write AFTER INSERT OR UPDATE OR DELETE ON {images} "
        "FOR EACH ROW EXECUTE FUNCTION {schema}.log_image_write()"
    )


@pytest.mark.parametrize("call", ["add_image", "remove_image", "reorder_images", "set_label", "clear_label"])
def test_the_image_service_s_writes_do_not_bounce_back(tenant, call):
    product = make_product(images=entries(4))
    assert run_command("--schema", TENANT, "--follow")[0] == 0
    photo_ids = [image_id for image_id, *_ in image_rows_with_ids(product.pk)]
    log_image_writes()

    with schema_context(TENANT):
        {
            "add_image": lambda: images.add_image(product.pk, "https://cdn.example/added.jpeg"),
            "remove_image": lambda: images.remove_image(photo_ids[1]),
            "reorder_images": lambda: images.reorder_images(product.pk, [photo_ids[2], photo_ids[0], photo_ids[1]]),
            "set_label": lambda: images.set_label(photo_ids[0]),
            "clear_label": lambda: images.clear_label(product.pk),
        }[call]()

    writes = sql_rows("SELECT image_id, operation, updated_at_changed FROM {schema}.image_writes")
    touched = {image_id for image_id, operation, _ in writes if operation == "UPDATE"}
    assert writes
    # Each row the service touched changed its updated_at once: the follower wrote nothing after it.
    assert sorted(image_id for image_id, _, changed in writes if changed) == sorted(touched), writes
    assert [operation for _, operation, _ in writes if operation != "UPDATE"] == {
        "add_image": ["INSERT"],
        "remove_image": ["DELETE"],
    }.get(call, [])
    assert state(product.pk) == (True, None)  # the mirrored JSON is the one recorded
    assert json_images(product.pk) == json_from_rows(product.pk)
    assert sql_value("SELECT count(*) FROM {schema}.product_images_removed") == 0


@pytest.mark.usefixtures("test_tenants_keep_their_json_column")
def test_finalize_removes_the_follower_and_restore_follow_puts_it_back(tenant):
    product = make_product(images=entries(3))
    assert run_command("--schema", TENANT, "--follow")[0] == 0

    code, output = run_lifecycle("finalize_images", "--schema", TENANT)

    assert code == 0, output
    assert not follower.follows(TENANT)
    assert sql_value("SELECT count(*) FROM pg_proc WHERE proname = %(name)s", {"name": follower.FUNCTION}) == 0

    code, output = run_lifecycle("restore_images_json", "--schema", TENANT, "--follow")

    assert code == 0, output
    assert follower.describe(TENANT) == "on"
    kept = image_rows_with_ids(product.pk)[:2]
    store_json(product.pk, entries(2) + [{"url": "https://cdn.example/after-restore.jpeg", "order": 5}])
    assert image_rows_with_ids(product.pk)[:2] == [(image_id, url, order, False) for image_id, url, order, _ in kept]
    assert image_rows_with_ids(product.pk)[2][1:] == ("https://cdn.example/after-restore.jpeg", 5, True)


def status_words(output: str) -> list[str]:
    """The words of TENANT's row in --status (its Follower cell among them)."""
    [line] = [line for line in output.splitlines() if line.split()[:1] == [TENANT]]
    return line.split()


def test_status_shows_the_follower_on_off_or_outdated_and_unfollow_removes_it(tenant):
    make_product(images=entries(2))
    assert "off" in status_words(run_command("--status", "--schema", TENANT)[2])

    assert run_command("--schema", TENANT, "--follow")[0] == 0
    code, _, output = run_command("--status", "--schema", TENANT)
    assert code == 0 and "on" in status_words(output) and "off" not in status_words(output)

    # A follower an older version of this code installed: its comment names another text.
    run_sql(
        "COMMENT ON FUNCTION {function}() IS 'stoflow follower 0000000000000000'",
        function=sql.Identifier(TENANT, follower.FUNCTION),
    )
    assert "outdated: run --follow again" in " ".join(run_command("--status", "--schema", TENANT)[2].split())
    assert run_command("--schema", TENANT, "--follow")[0] == 0
    assert follower.describe(TENANT) == "on"

    code, _, output = run_command("--unfollow", "--schema", TENANT)

    assert code == 0 and f"{TENANT}: follower removed" in output
    assert follower.installed_version(TENANT) is None
    assert sql_value("SELECT count(*) FROM pg_trigger WHERE tgname = %(name)s", {"name": follower.TRIGGER}) == 0
    assert "off" in status_words(run_command("--status", "--schema", TENANT)[2])
    assert run_command("--unfollow", "--schema", TENANT)[2].strip() == f"{TENANT}: no follower"


def test_a_disabled_follower_is_named_disabled_and_follow_enables_it_again(tenant):
    product = make_product(images=entries(2))
    assert run_command("--schema", TENANT, "--follow")[0] == 0
    run_sql("ALTER TABLE {products} DISABLE TRIGGER {trigger}", trigger=sql.Identifier(follower.TRIGGER))
    store_json(product.pk, entries(3))  # not followed: the trigger does not fire

    assert follower.describe(TENANT) == follower.DISABLED
    assert follower.describe_many([TENANT]) == {TENANT: follower.DISABLED}
    assert "disabled: run --follow again" in " ".join(run_command("--status", "--schema", TENANT)[2].split())
    assert len(image_rows_with_ids(product.pk)) == 2

    assert run_command("--sync", "--follow", "--schema", TENANT)[0] == 0
    assert follower.describe(TENANT) == "on"
    store_json(product.pk, entries(4))
    assert len(image_rows_with_ids(product.pk)) == 4


@pytest.mark.parametrize("combined", ["--dry-run", "--check", "--follow", "--sync", "--force"])
def test_unfollow_combined_with_a_mode_or_a_migration_is_a_usage_error_and_removes_nothing(tenant, combined):
    make_product(images=entries(2))
    assert run_command("--schema", TENANT, "--follow")[0] == 0

    code, _, output = run_command("--unfollow", combined, "--schema", TENANT)

    assert code == 2 and f"cannot be combined with {combined}" in output
    assert follower.describe(TENANT) == "on"


@pytest.mark.parametrize(
    ("key", "named"),
    [
        # Two columns, one an image's id, the other its product (a unique index makes them a key).
        (
            "FOREIGN KEY (image_id, product_id) REFERENCES {images}(id, product_id) ON DELETE NO ACTION",
            "uploads(image_id, product_id) point at (ON DELETE NO ACTION)",
        ),
        # SET NULL on a NOT NULL column fails; SET DEFAULT here names no image.
        ("FOREIGN KEY (image_id) REFERENCES {images}(id) ON DELETE SET NULL", "(ON DELETE SET NULL)"),
        ("FOREIGN KEY (image_id) REFERENCES {images}(id) ON DELETE SET DEFAULT", "(ON DELETE SET DEFAULT)"),
    ],
)
def test_a_key_whose_delete_would_fail_holds_the_product_and_the_writer_goes_on(tenant, key, named):
    # Made before any row: under the test's transaction, a table with pending checks takes no index.
    run_sql("CREATE UNIQUE INDEX uploads_key ON {images} (id, product_id)")
    product = make_product(images=entries(3))
    assert run_command("--schema", TENANT, "--follow", "--allow", "uploads_key")[0] == 0
    run_sql(
        "CREATE TABLE {schema}.uploads (id bigserial PRIMARY KEY, image_id bigint NOT NULL DEFAULT 0, "
        "product_id bigint NOT NULL, " + key + ")"
    )
    before = image_rows_with_ids(product.pk)
    run_sql(
        "INSERT INTO {schema}.uploads (image_id, product_id) VALUES (%(image)s, %(product)s)",
        {"image": before[0][0], "product": product.pk},
    )

    store_json(product.pk, entries(3)[1:])  # the uploaded photo left the JSON; the writer's statement goes on

    assert image_rows_with_ids(product.pk) == before
    json_follows, refused = state(product.pk)
    assert json_follows and named in refused and refused.endswith(": rows kept"), refused
    with schema_context(TENANT):
        assert listing_photos(product.pk, "ebay") == []  # held back
    # With the follower on and the product held, the checks pass (the held product keeps its rows, listed).
    assert run_command("--check", "--schema", TENANT)[0] == 0
