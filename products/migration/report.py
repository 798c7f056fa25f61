"""The migration report as plain data; ``rendering`` turns it into text."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime

from stoflow.tenants.blocking import Blocker
from stoflow.tenants.locks import LockHolder
from stoflow.tenants.runner import SIGTERM, Interruption


class ExitCodeWithMeaning(enum.IntEnum):
    """An exit status carrying its meaning; a command's enum lists its codes, the first that applies first."""

    meaning: str

    def __new__(cls, value: int, meaning: str):
        member = int.__new__(cls, value)
        member._value_ = value
        member.meaning = meaning
        return member


class ExitCode(ExitCodeWithMeaning):
    """Exit status of ``migrate_images``, each with its meaning: the one table that ``--help``,
    the failure message and the table in docs/migrate_images.md (checked by a test) all come from.
    When several apply, the first listed wins."""

    OK = 0, "Every product migrated (or already), no errors, every check PASS"
    INTERNAL_ERROR = (
        70,
        "An unexpected error in the command itself (a bug, not your data): the traceback is printed; whole "
        "batches already committed are kept. Please report it",
    )
    DATABASE_FAILURE = (
        5,
        "The database is unreachable, or failed mid-run (connection lost, statement timeout, ...): whole batches "
        "already committed are kept, the report is written (partial), the ledger says where a re-run resumes",
    )
    TERMINATED = (
        143,
        "Terminated (SIGTERM), handled like Ctrl-C: whole batches already committed are kept, the report is "
        "written; re-run to finish",
    )
    INTERRUPTED = (
        130,
        "Interrupted (Ctrl-C), or cancelled (`--cancel RUN` or the run ledger's Cancel button): whole batches "
        "already committed are kept, the report is written; re-run to finish",
    )
    USAGE = (
        2,
        "Usage error: bad option, unknown `--schema`, `--force` not confirmed, server older than PostgreSQL 16, "
        "a pooler in transaction mode in between, no tenant registry or run ledger (run `migrate_schemas`); "
        "nothing was done. Or a tenant refused by its preflight (a table or column missing or of another type, a "
        "trigger or constraint on product_images the migration does not know): it is listed with the reason and "
        "not touched, the other tenants went on (unless `--max-failures` stopped the wave)",
    )
    BLOCKED = (
        7,  # not 6: finalize_images refuses a tenant with 6, and the image commands share their codes
        "A tenant was blocked: a statement waited longer than `--lock-timeout` for a lock held by another session, "
        "on every retry; the report names the blocking pid and query, the tenant's committed batches are kept and "
        "the other tenants went on (unless `--max-failures` stopped the wave). Re-run once the blocker is gone",
    )
    CHECK_FAILED = 3, "A validation check is FAIL"
    PRODUCT_ERRORS = 1, "Some products could not be migrated; they are listed with tenant, id and reason"
    TENANT_BUSY = (
        4,
        "A tenant was skipped: another run holds its lock (a lock no run recorded is reported as stale, with how "
        "to clear it)",
    )


@dataclass
class ProductError:
    tenant: str
    product_id: int
    reason: str


@dataclass
class Repair:
    """Products whose images needed one kind of repair; ``sample_ids`` holds the lowest few ids."""

    reason: str
    products: int = 0
    sample_ids: list[int] = field(default_factory=list)

    def add(self, products: int, ids: list[int]) -> None:
        self.products += products
        self.sample_ids = sorted(self.sample_ids + ids)[:SAMPLE_SIZE]


@dataclass
class BatchSizes:
    """The batches a walk committed (rehearsed, in a dry run): how many, their sizes, their time."""

    target_ms: int = 0  # --batch-time: the time each batch aimed at (0: a fixed --batch-size)
    batches: int = 0
    products: int = 0  # summed over the batches
    smallest: int = 0
    largest: int = 0
    seconds: float = 0.0  # in the batches' transactions (with their retries)
    halved: int = 0  # times the size was halved after a lock or statement timeout, before the retry

    def add_batch(self, products: int, seconds: float) -> None:
        self.smallest = min(self.smallest, products) if self.batches else products
        self.largest = max(self.largest, products)
        self.batches += 1
        self.products += products
        self.seconds += seconds

    def add(self, other: BatchSizes) -> None:
        if other.batches:
            self.smallest = min(self.smallest, other.smallest) if self.batches else other.smallest
            self.largest = max(self.largest, other.largest)
        self.target_ms = self.target_ms or other.target_ms
        self.batches += other.batches
        self.products += other.products
        self.seconds += other.seconds
        self.halved += other.halved


@dataclass
class Wait:
    """Time a walk spent before its batches waiting for one reason: the database's health, or a pause."""

    reason: str  # one of WAIT_REASONS
    seconds: float = 0.0
    times: int = 0  # waits begun for it
    detail: str = ""  # what was seen when the last of them began, e.g. "standby s1 7.2 s behind (limit 5 s)"


@dataclass
class Pace:
    """How a tenant's walk went, beside what it did: its batches' sizes and time, and its waits before them."""

    batch_sizes: BatchSizes = field(default_factory=BatchSizes)
    waits: list[Wait] = field(default_factory=list)  # one per reason met, in WAIT_REASONS order

    def add(self, other: Pace) -> None:
        self.batch_sizes.add(other.batch_sizes)
        for wait in other.waits:
            mine = self.wait(wait.reason)
            mine.seconds += wait.seconds
            mine.times += wait.times
            mine.detail = mine.detail or wait.detail

    def wait(self, reason: str) -> Wait:
        for wait in self.waits:
            if wait.reason == reason:
                return wait
        wait = Wait(reason)
        self.waits.append(wait)
        self.waits.sort(key=lambda each: WAIT_REASONS.index(each.reason))
        return wait

    @property
    def seconds_waited(self) -> float:
        return sum(wait.seconds for wait in self.waits)


# Why a walk waits before a batch.
REPLICA_LAG = "replica lag"
VACUUM = "vacuum on product_images"
LOCK_WAITS = "lock waits on the tenant's tables"
PAUSED = "paused"
WAIT_REASONS = (REPLICA_LAG, VACUUM, LOCK_WAITS, PAUSED)


@dataclass
class TenantRun:
    """What the migration did (or, in a dry run, would do) in one tenant."""

    products: int = 0  # products with a non-empty images value
    images_migrated: int = 0
    labels_detected: int = 0
    already_migrated: int = 0
    repaired: int = 0
    soft_deleted: int = 0
    repairs: list[Repair] = field(default_factory=list)
    errors: list[ProductError] = field(default_factory=list)
    # --sync: products whose rows differed from their JSON (emptied JSON included), rebuilt.
    resynced: Repair = field(default_factory=lambda: Repair(RESYNCED))
    rows_kept_aside: int = 0  # removed rows copied to product_images_removed (their URL left the JSON)
    # Rows of other tables pointing at the image rows --force or --sync removed (ON DELETE CASCADE deletes
    # them, SET NULL empties them); a dry run counts those it would remove.
    references_removed: int = 0
    # --force or --sync: products whose JSON is now empty or null, so every row they had was removed.
    emptied: Repair = field(default_factory=lambda: Repair(EMPTIED))

    def add(self, other: TenantRun) -> None:
        for name in COUNTERS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.resynced.add(other.resynced.products, other.resynced.sample_ids)
        self.emptied.add(other.emptied.products, other.emptied.sample_ids)
        for repair in other.repairs:
            self.repair(repair.reason).add(repair.products, repair.sample_ids)
        self.errors.extend(other.errors)

    def repair(self, reason: str) -> Repair:
        for repair in self.repairs:
            if repair.reason == reason:
                return repair
        repair = Repair(reason)
        self.repairs.append(repair)
        return repair


SAMPLE_SIZE = 10  # product ids shown per repair and per failing check
SPOT_CHECK_ROWS = 20  # rows of the spot-check product shown at most (the first 10 and the last 10)
COUNTERS = (
    "products",
    "images_migrated",
    "labels_detected",
    "already_migrated",
    "repaired",
    "soft_deleted",
    "rows_kept_aside",
    "references_removed",
)
RESYNCED = (
    "rows differed from the JSON (changed, reordered, relabelled or emptied): brought to it in place, "
    "ids kept where the URL stays"
)
EMPTIED = "the JSON is now empty or null: every row of the product removed"


@dataclass
class CheckResult:
    """One validation check (the seed report's six queries, check 4 made per product), run on one tenant."""

    number: int
    name: str
    figure: int
    expected: int
    sql: str
    products_at_fault: int = 0  # products the check fails for, where it looks per product
    product_ids: list[int] = field(default_factory=list)  # the first SAMPLE_SIZE of them
    note: str = ""  # a further figure the check's query gives

    @property
    def passed(self) -> bool:
        return self.figure == self.expected and self.products_at_fault == 0


@dataclass
class SpotRow:
    order: int
    is_label: bool
    url: str


@dataclass
class SpotCheck:
    product_id: int
    rows: list[SpotRow]  # at most SPOT_CHECK_ROWS: the first and the last by order when the product has more
    total_rows: int = 0  # the product's rows in all (0: as many as shown)

    @property
    def image_count(self) -> int:
        return self.total_rows or len(self.rows)


@dataclass
class Validation:
    checks: list[CheckResult]
    distribution: list[tuple[int, int]]  # (images per product, products), ascending
    products_with_several_images: int
    labels: int
    spot_check: SpotCheck | None

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.checks)

    def check(self, number: int) -> CheckResult | None:
        """The check of that number, if this tenant ran it (a finalized tenant runs fewer)."""
        return next((check for check in self.checks if check.number == number), None)


@dataclass
class Blocked:
    """A tenant given up on: a statement waited longer than the lock timeout, on every attempt."""

    what: str  # the work that waited, e.g. "products (1000, 2000]" or "the validation"
    attempts: int
    lock_timeout_ms: int
    error: str  # PostgreSQL's message for the last attempt
    # The sessions seen holding the lock on any of the attempts (pid, query, ...).
    blockers: list[Blocker] = field(default_factory=list)

    @property
    def held_by(self) -> str:
        """The blocking sessions in one line, for a message (the ledger's, finalize's and restore's)."""
        return "; ".join(f"pid {b.pid} ({b.state}): {b.query}" for b in self.blockers) or "no blocker seen"


@dataclass
class TenantReport:
    schema: str
    busy: bool = False  # another run held the tenant's lock: nothing done
    # finalize_images dropped its JSON column: nothing to migrate from, only the checks on the table run.
    finalized: bool = False
    run: TenantRun | None = None  # None under --check
    validation: Validation | None = None
    seconds: dict[str, float] = field(default_factory=dict)  # phase -> seconds
    # busy: the session holding the lock, and what it is (a run in progress, or a stale lock and how to clear it).
    lock_holder: LockHolder | None = None
    lock_note: str = ""
    refused: list[str] = field(default_factory=list)  # the preflight's reasons: the tenant was not touched
    blocked: Blocked | None = None  # given up on locks held elsewhere; committed batches kept, not validated
    interrupted: bool = False  # stopped part-way by Ctrl-C, SIGTERM or a cancel: committed batches kept
    interrupted_by: str = ""  # SIGINT, SIGTERM or "cancel" (stoflow.tenants.runner)
    failure: str = ""  # the database error that stopped the run in this tenant
    resumed_after: int | None = None  # the walk began after this product id, where an unfinished run stopped
    resume_note: str = ""  # which run stopped there, or why this run walks every product
    # Foreign keys of other tables that point at product_images, as "table(columns) ON DELETE action".
    referencing_keys: list[str] = field(default_factory=list)
    pace: Pace = field(default_factory=Pace)  # the batches' sizes and the waits before them
    # --follow: whether the follower was installed (after the checks passed, with the products whose JSON had
    # changed caught up first) or why not; empty when not asked.
    follower: str = ""
    # This run opened the tenant's ledger entry, which says where a re-run resumes (False: stopped before it).
    ledger_entry_opened: bool = False

    @property
    def wave_failure(self) -> str:
        """Why ``--max-failures`` counts this tenant: it failed, was blocked or has a check FAIL ("" if none)."""
        if self.failure:
            return "failed"
        if self.blocked:
            return "blocked"
        if self.validation and not self.validation.passed:
            return "checks FAIL"
        return ""

    @property
    def status(self) -> str:
        """busy, refused, failed, interrupted, blocked, finalized, errors or done (check results aside)."""
        if self.busy:
            return "busy"
        if self.refused:
            return "refused"
        if self.failure:
            return "failed"
        if self.interrupted:
            return "interrupted"
        if self.blocked:
            return "blocked"
        if self.finalized:
            return "finalized"
        if self.run and self.run.errors:
            return "errors"
        return "done"


@dataclass
class WaveStop:
    """--max-failures: the run started no further tenant once this many had ended badly."""

    max_failures: int
    failed: list[str]  # "schema (why)": the tenants that counted, in the order they ended
    not_started: list[str]


@dataclass
class MigrationReport:
    mode: str  # "live", "dry-run" or "check"
    started_at: datetime
    tenants: list[TenantReport] = field(default_factory=list)
    interruption: Interruption | None = None
    failure: str = ""  # "schema: error": the database failure that stopped the run (the report is partial)
    wave_stop: WaveStop | None = None
    run_id: str = ""  # the run's id in the ledger (what --pause/--resume/--cancel take)

    @property
    def total(self) -> TenantRun:
        total = TenantRun()
        for tenant in self.tenants:
            if tenant.run:
                total.add(tenant.run)
        return total

    @property
    def errors(self) -> list[ProductError]:
        return [error for tenant in self.tenants if tenant.run for error in tenant.run.errors]

    @property
    def failed_checks(self) -> list[tuple[str, CheckResult]]:
        return [
            (tenant.schema, check)
            for tenant in self.tenants
            if tenant.validation
            for check in tenant.validation.checks
            if not check.passed
        ]

    @property
    def busy_tenants(self) -> list[str]:
        return [tenant.schema for tenant in self.tenants if tenant.busy]

    @property
    def refused_tenants(self) -> list[str]:
        return [tenant.schema for tenant in self.tenants if tenant.refused]

    @property
    def blocked_tenants(self) -> list[str]:
        return [tenant.schema for tenant in self.tenants if tenant.blocked]

    @property
    def finalized_tenants(self) -> list[str]:
        return [tenant.schema for tenant in self.tenants if tenant.finalized]

    @property
    def seconds(self) -> dict[str, float]:
        """Time per phase, summed over tenants."""
        phases: dict[str, float] = {}
        for tenant in self.tenants:
            for phase, seconds in tenant.seconds.items():
                phases[phase] = phases.get(phase, 0.0) + seconds
        return phases

    @property
    def exit_code(self) -> ExitCode:
        if self.failure:
            return ExitCode.DATABASE_FAILURE
        if self.interruption:
            return ExitCode.TERMINATED if self.interruption.signal == SIGTERM else ExitCode.INTERRUPTED
        if self.refused_tenants:
            return ExitCode.USAGE
        if self.blocked_tenants:
            return ExitCode.BLOCKED
        if self.failed_checks:
            return ExitCode.CHECK_FAILED
        if self.errors:
            return ExitCode.PRODUCT_ERRORS
        if self.busy_tenants:
            return ExitCode.TENANT_BUSY
        return ExitCode.OK
