"""The tenant registry and the run ledger, read."""

from dataclasses import dataclass

from django.db.models import Q
from django.db.models.functions import Collate, Length
from django_tenants.utils import get_public_schema_name, get_tenant_model
from psycopg import sql

from stoflow.raw_sql import fetch_rows


def tenant_schema_names() -> list[str]:
    """Every registered seller schema, public excluded, in natural order (user_2 before user_10)."""
    names = (
        get_tenant_model().objects.exclude(schema_name=get_public_schema_name()).values_list("schema_name", flat=True)
    )
    return sorted(names, key=_natural_key)


def matching_seller_schemas(search: str = ""):
    """The seller schemas whose schema name or seller name holds ``search`` (any case; all of them when empty),
    in natural order, as a query: a page of it reads that page only (10,000 sellers, 50 a page)."""
    sellers = get_tenant_model().objects.exclude(schema_name=get_public_schema_name())
    if search:
        sellers = sellers.filter(Q(schema_name__icontains=search) | Q(name__icontains=search))
    # _natural_key in SQL: length first, then the code points ("C" collation, as Python compares strings).
    return sellers.order_by(Length("schema_name"), Collate("schema_name", "C")).values_list("schema_name", flat=True)


@dataclass(frozen=True)
class CampaignCounts:
    """The migration campaign over the whole fleet, from the run ledger: sellers by their latest live run."""

    with_a_live_run: int
    in_sync: int  # latest live run done, every check passing
    needing_a_look: int  # latest live run blocked, interrupted, failed, with errors or a failing check
    runs_now: int  # sellers with a run going on now (running or paused, live or dry run)
    paused: int


# One pass over the ledger's index per seller: the latest live entry of each.
_CAMPAIGN = """SELECT count(*),
       count(*) FILTER (WHERE latest.status = %(done)s AND latest.checks_passed),
       count(*) FILTER (WHERE latest.status NOT IN (%(running)s, %(paused)s)
                        AND NOT (latest.status = %(done)s AND latest.checks_passed IS TRUE)),
       (SELECT count(DISTINCT schema_name) FROM public.run_ledger
        WHERE command = %(command)s AND status IN (%(running)s, %(paused)s)),
       (SELECT count(DISTINCT schema_name) FROM public.run_ledger WHERE command = %(command)s AND status = %(paused)s)
FROM (
    SELECT DISTINCT ON (schema_name) status, checks_passed
    FROM public.run_ledger
    WHERE command = %(command)s AND mode = %(live)s
    ORDER BY schema_name, started_at DESC, id DESC
) AS latest"""


def campaign_counts() -> CampaignCounts:
    from stoflow.tenants.models import LedgerEntry  # a model: the admin site imports this module before the registry

    params = {
        "command": LedgerEntry.MIGRATE_IMAGES,
        "live": LedgerEntry.LIVE,
        "done": LedgerEntry.DONE,
        "running": LedgerEntry.RUNNING,
        "paused": LedgerEntry.PAUSED,
    }
    ((with_a_live_run, in_sync, needing_a_look, runs_now, paused),) = fetch_rows(sql.SQL(_CAMPAIGN), params)
    return CampaignCounts(with_a_live_run, in_sync, needing_a_look, runs_now, paused)


def _natural_key(schema: str) -> tuple[int, str]:
    return len(schema), schema


def unregistered_seller_schemas() -> list[str]:
    """Seller schemas (user_N) present in the database but not registered as tenants."""
    present = fetch_rows(sql.SQL(r"SELECT nspname FROM pg_namespace WHERE nspname ~ '^user_\d+$'"))
    registered = set(tenant_schema_names())
    return sorted((name for (name,) in present if name not in registered), key=_natural_key)
