"""The fleet's part of the benchmark: the pace of ``--batch-time`` against fixed batch sizes, what the health
checks before each batch cost, and the public admin's seller picker over a generated fleet of sellers.

The fleet (``--picker-sellers``, default 10,000) is generated once in the benchmark's database: that many
sellers registered (``fleet1`` ... ``fleetN``: short names, so they sort first and fill the picker's first
page) with two run ledger entries each (a dry run, then a live run: most done, some blocked or with a
failing check, a few running now). The first page's sellers get real schemas with the product tables
(copied from a template tenant, a few products each); the others are registered only: the picker reads the
catalogues of the page it shows, never the others', so their schemas would change no query of page 1, and
10,000 schemas of four tables each would cost the benchmark's database minutes and a gigabyte to make.
"""

from __future__ import annotations

import statistics
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.db import transaction
from django.test import Client
from django.test.utils import setup_test_environment
from django.utils import timezone
from django_tenants.utils import get_public_schema_name

from bench.datasets import copy_tenant_tables
from products.demo import demo_image_counts, fill_products
from products.migration.batches import MigrationOptions
from products.migration.pace import read_gate
from stoflow.tenants.models import LedgerEntry, Tenant
from stoflow.tenants.services import ensure_tenant, register_existing_schemas
from stoflow.tenants.sites import SELLERS_PER_PAGE

FLEET_PREFIX = "fleet"
FLEET_TEMPLATE = "fleet_template"
PRODUCTS_PER_PAGE_SELLER = 20
BENCH_STAFF = "bench-staff"
GATE_CHECKS = 300  # gate checks timed to measure one


@dataclass(frozen=True)
class PaceFigures:
    """--batch-time on the 30x set against the best fixed --batch-size, and the health checks' share."""

    batch_time: str
    migrate: float  # median migrate seconds with --batch-time
    best_size: int
    best_migrate: float
    ignore_health_migrate: float  # the same runs with --ignore-health (no health check: what they cost, roughly)
    batches: int  # of a --batch-time run
    smallest: int
    largest: int
    average: float
    check_ms: float  # one gate check: the statement reading the control row and the health signals

    @property
    def ratio_to_best(self) -> float:
        return self.migrate / self.best_migrate

    @property
    def health_share(self) -> float:
        """The gate checks' time over the run's migrate time, in percent."""
        return 100 * self.batches * self.check_ms / 1000 / self.migrate


@dataclass(frozen=True)
class PickerFigures:
    sellers: int
    first_page_ms: float  # median time of the public admin's index, page 1
    later_page_ms: float  # a page of sellers registered without schemas
    search_ms: float  # a search for one seller


def time_gate_checks(schema: str) -> float:
    """Milliseconds of one gate check before a batch (the run's control row and the health signals)."""
    options = MigrationOptions(run_id=uuid.uuid4().hex)
    started = time.perf_counter()
    for _ in range(GATE_CHECKS):
        read_gate(schema, options)
    return 1000 * (time.perf_counter() - started) / GATE_CHECKS


def ensure_fleet(sellers: int) -> bool:
    """Generate the fleet unless it is there; True when it was made."""
    names = [f"{FLEET_PREFIX}{number}" for number in range(1, sellers + 1)]
    if Tenant.objects.filter(schema_name__startswith=FLEET_PREFIX).count() == sellers + 1:  # with the template
        return False
    ensure_tenant(FLEET_TEMPLATE)
    registered = set(Tenant.objects.filter(schema_name__in=names).values_list("schema_name", flat=True))
    with_schemas = names[:SELLERS_PER_PAGE]
    for schema in with_schemas:
        if schema not in registered:
            with transaction.atomic():
                copy_tenant_tables(FLEET_TEMPLATE, schema)
                register_existing_schemas([schema])
            fill_products(schema, demo_image_counts()[:PRODUCTS_PER_PAGE_SELLER])
    missing = [name for name in names if name not in registered and name not in with_schemas]
    # Registered without a schema (bulk_create skips the tenant's save, which would create it): see above.
    Tenant.objects.bulk_create([Tenant(schema_name=name, name=f"Seller {name}") for name in missing], batch_size=2000)
    LedgerEntry.objects.filter(schema_name__in=names).delete()
    LedgerEntry.objects.bulk_create(
        [entry for number, name in enumerate(names, start=1) for entry in _ledger_entries(number, name)],
        batch_size=2000,
    )
    return True


def _ledger_entries(number: int, schema: str) -> list[LedgerEntry]:
    """A dry run a day ago, then a live run: mostly done, one in 50 blocked, one in 40 with a failing check, one
    in 500 running now."""
    day_ago = timezone.now() - timedelta(days=1)
    run_id = uuid.uuid4().hex
    live_status, checks = LedgerEntry.DONE, True
    if number % 50 == 0:
        live_status, checks = LedgerEntry.BLOCKED, None
    elif number % 40 == 0:
        checks = False
    elif number % 500 == 1:
        live_status, checks = LedgerEntry.RUNNING, None
    common = {"schema_name": schema, "command": LedgerEntry.MIGRATE_IMAGES, "backend_pid": 1000 + number}
    figures = {"images_migrated": 120, "errors": 0}
    return [
        LedgerEntry(
            run_id=uuid.uuid4().hex,
            mode=LedgerEntry.DRY_RUN,
            status=LedgerEntry.DONE,
            started_at=day_ago,
            heartbeat_at=day_ago,
            finished_at=day_ago,
            checks_passed=True,
            batches=1,
            figures=figures,
            client="bench:1",
            **common,
        ),
        LedgerEntry(
            run_id=run_id,
            mode=LedgerEntry.LIVE,
            status=live_status,
            started_at=day_ago + timedelta(hours=1),
            heartbeat_at=day_ago + timedelta(hours=1),
            finished_at=None if live_status == LedgerEntry.RUNNING else day_ago + timedelta(hours=1),
            checks_passed=checks,
            batches=1,
            figures=figures,
            client="bench:2",
            message="blocked on products (0, 20]" if live_status == LedgerEntry.BLOCKED else "",
            **common,
        ),
    ]


def time_picker(runs: int, sellers: int) -> PickerFigures:
    """The public admin's index as a staff user gets it (Django's test client, in this process), medians."""
    setup_test_environment()  # the test client's host name, as in the tests
    user = get_user_model().objects.filter(username=BENCH_STAFF).first()
    user = user or get_user_model().objects.create_superuser(BENCH_STAFF, password=uuid.uuid4().hex)
    client = Client()
    client.force_login(user)
    last_page = -(-Tenant.objects.exclude(schema_name=get_public_schema_name()).count() // SELLERS_PER_PAGE)

    def median_ms(path: str) -> float:
        timings = []
        for _ in range(runs):
            started = time.perf_counter()
            response = client.get(path)
            timings.append(1000 * (time.perf_counter() - started))
            assert response.status_code == 200, f"{path}: {response.status_code}"
        return statistics.median(timings)

    median_ms("/admin/")  # a first load warms Django's templates and the server's caches
    return PickerFigures(
        sellers,
        median_ms("/admin/"),
        median_ms(f"/admin/?p={last_page}"),
        median_ms(f"/admin/?q={FLEET_PREFIX}{sellers // 2}"),
    )
