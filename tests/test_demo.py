"""The demo reproduces the seed report's figures."""

from collections import Counter
from io import StringIO

from django.core.management import call_command

from products.demo import DEMO_TENANTS, SEED_DISTRIBUTION, demo_image_counts
from tests.helpers import GOLDEN, assert_golden_report, run_command, verbatim_rows

# The demo's first-backfill report (tests.helpers.assert_golden_report says how it is compared).
FIRST_BACKFILL_REPORT = GOLDEN / "demo-first-backfill.md"


# Copied from docs/seed-migration-report.md ("Validation Queries"), with their results there.
SEED_QUERIES = [
    ("SELECT COUNT(*) FROM user_1.product_images;", [(19607,)]),
    ("SELECT COUNT(*) FROM user_1.product_images WHERE is_label = true;", [(3281,)]),
    (
        """SELECT product_id, COUNT(*)
FROM user_1.product_images
GROUP BY product_id, "order"
HAVING COUNT(*) > 1;""",
        [],
    ),
    (
        """WITH jsonb_counts AS (
    SELECT id, jsonb_array_length(images) as jsonb_count
    FROM user_1.products
    WHERE images IS NOT NULL AND deleted_at IS NULL
),
table_counts AS (
    SELECT product_id, COUNT(*) as table_count
    FROM user_1.product_images
    GROUP BY product_id
)
SELECT COUNT(*) as mismatches
FROM jsonb_counts j
LEFT JOIN table_counts t ON j.id = t.product_id
WHERE j.jsonb_count != COALESCE(t.table_count, 0);""",
        [(0,)],
    ),
    (
        """WITH max_orders AS (
    SELECT product_id, MAX("order") as max_order
    FROM user_1.product_images
    GROUP BY product_id
),
labels AS (
    SELECT product_id, "order"
    FROM user_1.product_images
    WHERE is_label = true
)
SELECT COUNT(*) as incorrect_labels
FROM labels l
JOIN max_orders m ON l.product_id = m.product_id
WHERE l."order" != m.max_order;""",
        [(0,)],
    ),
    (
        """SELECT product_id, COUNT(*)
FROM user_1.product_images
WHERE is_label = true
GROUP BY product_id
HAVING COUNT(*) > 1;""",
        [],
    ),
]


def test_demo_counts_follow_the_seed_distribution_exactly():
    counts = demo_image_counts()
    assert Counter(counts) == SEED_DISTRIBUTION
    assert (len(counts), sum(counts)) == (3281, 19607)
    assert counts[0] == 4  # the seed report's spot-check product has four images


def test_seed_demo_then_migrate_images_gives_the_seed_report_figures(db, tmp_path, monkeypatch):
    out = StringIO()
    monkeypatch.delenv("ADMIN_PORT", raising=False)
    call_command("seed_demo", stdout=out)
    assert "user_1: created, 3,281 products added" in out.getvalue()
    assert "Admin: `make admin`, then http://127.0.0.1:8000/admin/" in out.getvalue()
    out = StringIO()
    monkeypatch.setenv("ADMIN_PORT", "8123")  # `make admin ADMIN_PORT=8123` serves there
    call_command("seed_demo", stdout=out)  # safe to re-run
    assert "user_1: exists, products already there" in out.getvalue()
    assert "Admin: `make admin`, then http://127.0.0.1:8123/admin/" in out.getvalue()

    args = [arg for schema in DEMO_TENANTS for arg in ("--schema", schema)]
    code, report, output = run_command(*args, "--report", str(tmp_path / "report.md"), tmp_path=tmp_path)

    assert code == 0, output
    assert_golden_report((tmp_path / "report.md").read_text(), FIRST_BACKFILL_REPORT)
    rows = {t["schema"]: t["run"] for t in report["tenants"]}
    assert [rows["user_1"][k] for k in ("products", "images_migrated", "labels_detected")] == [3281, 19607, 3281]
    assert len(rows["user_1"]["errors"]) == 0
    assert all(rows[s]["products"] == 0 for s in ("user_2", "user_4", "user_5"))
    user_1 = report["tenants"][0]["validation"]
    assert dict(map(tuple, user_1["distribution"])) == SEED_DISTRIBUTION
    assert [c["passed"] for t in report["tenants"] for c in t["validation"]["checks"]] == [True] * 24
    assert user_1["spot_check"]["product_id"] == 1
    assert [r["is_label"] for r in user_1["spot_check"]["rows"]] == [False, False, False, True]
    assert "user_1   3281       19,607            3,281             0" in output

    # The seed report's six queries give the seed report's results. Run verbatim on purpose (not through
    # run_sql/sql_rows): they are the seed report's text, as its reader runs them.
    for query, expected in SEED_QUERIES:
        assert verbatim_rows(query) == expected, query

    code, report, _ = run_command(*args, tmp_path=tmp_path)
    assert code == 0
    assert report["total"]["already_migrated"] == 3281 and report["total"]["images_migrated"] == 0
