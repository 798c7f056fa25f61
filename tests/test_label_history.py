"""The image service's label history, undo, expected arrangements, move_image and error codes, and the admin's
bulk label jobs advanced from two sessions, on the real DB."""

import threading

import pytest
from django.db import connection, connections
from django_tenants.utils import schema_context

from products import images
from products.admin.label_jobs import advance, start_job
from products.admin.label_plans import describe_change
from products.images import (
    Arrangement,
    ImagesChanged,
    ImageServiceError,
    InvalidPosition,
    LabelStaysLast,
    NotUndoable,
    arrangement,
    clear_label,
    move_image,
    remove_image,
    set_label,
    undo_label_change,
)
from products.models import LabelChange, LabelJob, LabelJobItem, ProductImage
from tests.helpers import (
    TENANT,
    image_ids,
    image_rows,
    image_state,
    join_all,
    json_from_rows,
    json_images,
    migrated_product,
    other_session,
    tenant_sql,
    wait_until_blocked_by,
)


def test_every_refusal_has_a_code_of_its_own():
    classes = [images.ImageServiceError, *_subclasses(images.ImageServiceError)]
    codes = [cls.code for cls in classes]
    assert len(codes) == len(set(codes)), codes
    assert {"images_changed", "image_not_found", "held_back", "json_changed", "invalid_position"} <= set(codes)


def _subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def test_set_label_records_who_changed_it_from_which_image_to_which(tenant):
    product = migrated_product(4)
    one, two, three, four = image_ids(product.pk)
    with schema_context(TENANT):
        change = set_label(two, actor="agent-a")
        assert arrangement(product) == Arrangement((one, three, four), two)
        stored = LabelChange.objects.get()
    assert stored == change
    assert (stored.product_id, stored.actor, stored.job, stored.undoes) == (product.pk, "agent-a", None, None)
    assert (stored.photos_before, stored.label_before) == ([one, two, three], four)
    assert (stored.photos_after, stored.label_after) == ([one, three, four], two)
    assert set(stored.urls) == {str(two), str(four)}  # the two images named, kept for when they are gone


def test_a_change_that_changes_nothing_records_nothing(tenant):
    product = migrated_product(3)
    with schema_context(TENANT):
        assert set_label(image_ids(product.pk)[-1], actor="a") is None
        assert clear_label(migrated_product(1), actor="a") is None
        assert not LabelChange.objects.exists()


def test_undo_puts_back_the_images_exactly_as_they_were_and_is_recorded_too(tenant):
    product = migrated_product(4)
    before = image_state(product.pk)
    with schema_context(TENANT):
        first = set_label(image_ids(product.pk)[0], actor="agent-a")
        undo = undo_label_change(first, actor="agent-b")
        assert undo.undoes == first and undo.actor == "agent-b"
        # The undo can itself be undone: the change is made again.
        redo = undo_label_change(undo, actor="agent-a")
    rows, json = image_state(product.pk)
    assert (redo.photos_after, redo.label_after) == (first.photos_after, first.label_after)
    with schema_context(TENANT):
        undo_label_change(redo, actor="agent-a")
    rows, json = image_state(product.pk)
    # Ids, orders and labels as before (updated_at moved on); the JSON mirrored from the rows.
    assert [row[:5] for row in rows] == [row[:5] for row in before[0]]
    assert json == json_from_rows(product.pk)


def test_undo_is_refused_once_the_images_changed_since(tenant):
    product = migrated_product(4)
    one, two, three, four = image_ids(product.pk)
    with schema_context(TENANT):
        change = clear_label(product, actor="agent-a")
        move_image(one, 3)  # someone moved a photo afterwards
        state = image_state(product.pk)
        with pytest.raises(ImagesChanged, match="changed since label change"):
            undo_label_change(change, actor="agent-b")
    assert image_state(product.pk) == state
    with schema_context(TENANT):
        assert LabelChange.objects.count() == 1


def test_removing_the_label_is_recorded_and_cannot_be_undone(tenant):
    product = migrated_product(4)
    one, two, three, four = image_ids(product.pk)
    with schema_context(TENANT):
        change = remove_image(four, actor="agent-a")
        assert remove_image(one, actor="agent-a") is None  # a photo: the label stays as it was (none)
        stored = LabelChange.objects.get()
        assert stored == change and stored.actor == "agent-a"
        assert (stored.photos_before, stored.label_before) == ([one, two, three], four)
        assert (stored.photos_after, stored.label_after) == ([one, two, three], None)
        assert describe_change(stored) == "“4-3.jpeg”, the price label, was deleted: the product has no label now."
        state = image_state(product.pk)
        with pytest.raises(NotUndoable, match="a deleted image cannot be put back"):
            undo_label_change(stored, actor="agent-b")
    assert image_state(product.pk) == state


def test_removing_one_of_two_images_records_that_the_label_became_a_photo(tenant):
    product = migrated_product(2)
    photo, label = image_ids(product.pk)
    with schema_context(TENANT):
        change = remove_image(photo, actor="agent-a")
        assert (change.photos_before, change.label_before) == ([photo], label)
        assert (change.photos_after, change.label_after) == ([label], None)
        assert "the price label, became photo 1" in describe_change(change)
        with pytest.raises(NotUndoable):
            undo_label_change(change)
    assert [row[1] for row in image_rows(product.pk)] == [False]  # (order, is_label, url, created_at)


def test_a_call_refuses_when_the_images_are_not_as_the_caller_saw_them(tenant):
    product = migrated_product(4)
    one, two, three, four = image_ids(product.pk)
    with schema_context(TENANT):
        seen = arrangement(product)
        move_image(three, 1)  # another agent, in between
        state = image_state(product.pk)
        for call in (
            lambda: set_label(one, expected=seen),
            lambda: clear_label(product, expected=seen),
            lambda: move_image(two, 1, expected=seen),
        ):
            with pytest.raises(ImagesChanged) as refused:
                call()
            assert refused.value.code == "images_changed"
        assert image_state(product.pk) == state
        assert not LabelChange.objects.exists()
        move_image(two, 1, expected=arrangement(product))  # what is there now goes through
        assert arrangement(product) == Arrangement((two, three, one), four)


def test_move_image_moves_a_photo_to_a_position_in_one_step(tenant):
    product = migrated_product(6)
    a, b, c, d, e, label = image_ids(product.pk)
    with schema_context(TENANT):
        move_image(e, 1)
        assert arrangement(product) == Arrangement((e, a, b, c, d), label)
        move_image(e, 5)
        assert arrangement(product) == Arrangement((a, b, c, d, e), label)
        move_image(c, 3)  # where it is: nothing written
    assert json_images(product.pk) == json_from_rows(product.pk)


@pytest.mark.parametrize(
    ("which", "position", "error"),
    [(-1, 1, LabelStaysLast), (0, 0, InvalidPosition), (0, 4, InvalidPosition), (0, "2", InvalidPosition)],
)
def test_move_image_refuses_the_label_and_positions_the_product_does_not_have(tenant, which, position, error):
    product = migrated_product(4)
    state = image_state(product.pk)
    with schema_context(TENANT), pytest.raises(error) as refused:
        move_image(image_ids(product.pk)[which], position)
    assert isinstance(refused.value, ImageServiceError) and refused.value.code == error.code
    assert image_state(product.pk) == state


def test_move_image_reads_the_photos_under_the_lock_while_another_session_reorders_them(committed_db):
    """Another editor holds the product and reverses its photos; the move waits for it, then moves the photo
    among the photos as they are once it commits (the former Up/Down read them before the lock and failed)."""
    product = migrated_product(5)
    a, b, c, d, label = image_ids(product.pk)
    outcome = {}

    def move():
        try:
            with schema_context(TENANT):
                move_image(a, 2)
        except Exception as error:  # reported below
            outcome["error"] = error
        finally:
            connections.close_all()

    with other_session() as editor:
        editor.autocommit = False
        editor.execute(tenant_sql("SELECT id FROM {products} WHERE id = %(id)s FOR UPDATE"), {"id": product.pk})
        thread = threading.Thread(target=move, name="move_image")
        thread.start()
        wait_until_blocked_by(editor.info.backend_pid)
        # Reversed: d, c, b, a (orders 1-4), in two steps as the unique (product, order) index needs.
        editor.execute(
            tenant_sql('UPDATE {images} SET "order" = "order" + 100 WHERE id = ANY(%(ids)s)'), {"ids": [a, b, c, d]}
        )
        for order, pk in enumerate([d, c, b, a], start=1):
            editor.execute(
                tenant_sql('UPDATE {images} SET "order" = %(order)s WHERE id = %(id)s'), {"order": order, "id": pk}
            )
        editor.commit()
        join_all([thread])
    assert "error" not in outcome, outcome
    with schema_context(TENANT):
        assert arrangement(product) == Arrangement((d, a, c, b), label)
    connection.close()


def test_two_tabs_advancing_one_job_never_change_a_product_twice(committed_db):
    products = [migrated_product(3) for _ in range(3)]
    with schema_context(TENANT):
        selected = ProductImage.objects.filter(is_label=True)
        job = start_job("clear_label", "agent", selected=selected)
        first = job.items.order_by("product_id").first()
    with other_session() as tab:
        tab.autocommit = False
        # The other tab holds the first product's item while it changes it.
        tab.execute(
            tenant_sql("SELECT id FROM {schema}.label_job_items WHERE id = %(id)s FOR UPDATE"), {"id": first.pk}
        )
        with schema_context(TENANT):
            assert advance(job) == 2
            assert LabelJobItem.objects.get(pk=first.pk).outcome is None  # skipped, not waited for
            assert job.finished_at is None
        tab.rollback()
    with schema_context(TENANT):
        assert advance(job) == 1
        assert LabelJob.objects.get(pk=job.pk).finished_at is not None
    with schema_context(TENANT):
        assert not ProductImage.objects.filter(product__in=products, is_label=True).exists()
