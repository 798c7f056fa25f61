"""Running one job per tenant, serially or ``jobs`` tenants at a time.

With ``jobs`` > 1, tenants run in worker threads, each on its own database
connection (Django's connections are per thread); results keep tenant order.

Ctrl-C, and SIGTERM within ``sigterm_interrupts`` (raised as ``Terminated``, a KeyboardInterrupt), stop the
run between batches. Work stopped part-way may raise ``Stopped`` carrying its partial result, and work
failing on the database may carry one in ``TenantJobFailed.partial``: the results then include it, so a
report can show what was done before the stop.
"""

from __future__ import annotations

import queue
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from django.db import DatabaseError, connection

Result = TypeVar("Result")
TenantWork = Callable[[str, threading.Event], Result]

SIGINT = "SIGINT"
SIGTERM = "SIGTERM"
CANCEL = "cancel"  # not a signal: the run was cancelled from elsewhere (``Cancelled``)


class TenantJobFailed(Exception):
    """The database failed in a way no single row explains; the run stops.

    ``partial`` is the failing tenant's result so far, if the work gave one; ``results`` is filled in by
    ``for_each_tenant`` with every result of the run up to the failure, in tenant order.
    """

    def __init__(self, schema: str, cause: DatabaseError, partial: Any = None):
        super().__init__(f"{schema}: {str(cause).strip()}")
        self.schema = schema
        self.partial = partial
        self.results: list = []


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread (``sigterm_interrupts``): handled as Ctrl-C is."""


class Stopped(KeyboardInterrupt):
    """Work on a tenant stopped part-way by Ctrl-C or SIGTERM; ``partial`` is its result so far."""

    def __init__(self, partial: Any, signal_name: str = SIGINT):
        super().__init__(signal_name)
        self.partial = partial
        self.signal_name = signal_name


class Cancelled(KeyboardInterrupt):
    """The run was cancelled from elsewhere (another host's command line, the admin), seen between batches:
    it stops as on Ctrl-C, whole batches kept, the report written."""

    signal_name = CANCEL


def signal_name(interrupt: BaseException) -> str:
    """Which signal a KeyboardInterrupt stands for (or CANCEL, for a run cancelled from elsewhere)."""
    if isinstance(interrupt, Terminated):
        return SIGTERM
    name = getattr(interrupt, "signal_name", SIGINT)
    return name if name in (SIGTERM, CANCEL) else SIGINT


@contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """Within: SIGTERM raises ``Terminated`` in the main thread, so a run stops as on Ctrl-C.

    Outside the main thread (a signal handler can only be set there) this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum, frame):
        raise Terminated(SIGTERM)

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@dataclass
class Interruption:
    """Ctrl-C or SIGTERM stopped the run: committed batches are kept, a re-run finishes the job."""

    stopped_in: list[str]  # tenants being worked on when it came
    not_started: list[str]
    signal: str = SIGINT  # SIGINT (Ctrl-C), SIGTERM, or CANCEL (cancelled from elsewhere)
    cancelled_by: str = ""  # CANCEL: who asked


def for_each_tenant(
    schemas: list[str],
    jobs: int,
    work: TenantWork[Result],
    stop_starting: Callable[[Result], bool] | None = None,
) -> tuple[list[Result], Interruption | None]:
    """Run ``work`` on each tenant, ``jobs`` at a time; results come back in the order of ``schemas``.

    ``work`` gets an event set on Ctrl-C (parallel workers never see the signal
    themselves) and stops between batches by raising KeyboardInterrupt; a worker cancelled from elsewhere
    (``Cancelled``) stops the others the same way. ``stop_starting(result)``, asked of each finished tenant's
    result: True starts no further tenant (those at work finish); the tenants without a result were not started.
    """
    if jobs == 1:
        # In the calling thread and on its connection (tests run inside their transaction).
        results = []
        for number, schema in enumerate(schemas):
            try:
                results.append(_run_work(work, schema, threading.Event()))
                if stop_starting is not None and stop_starting(results[-1]):
                    return results, None
            except KeyboardInterrupt as interrupt:
                partial = getattr(interrupt, "partial", None)
                if partial is not None:
                    results.append(partial)
                return results, Interruption(
                    stopped_in=[schema], not_started=schemas[number + 1 :], signal=signal_name(interrupt)
                )
            except TenantJobFailed as failure:
                failure.results = results + ([failure.partial] if failure.partial is not None else [])
                raise
        return results, None
    return _for_each_tenant_in_parallel(schemas, jobs, work, stop_starting)


def _for_each_tenant_in_parallel(
    schemas: list[str], jobs: int, work: TenantWork[Result], stop_starting: Callable[[Result], bool] | None
) -> tuple[list[Result], Interruption | None]:
    pending: queue.SimpleQueue[str] = queue.SimpleQueue()
    for schema in schemas:
        pending.put(schema)
    stop = threading.Event()
    no_more = threading.Event()  # stop_starting said so: workers take no further tenant
    cancelled = threading.Event()
    done: dict[str, Result] = {}  # finished tenants, and those stopped part-way with a partial result
    stopped_in: list[str] = []
    failures: list[TenantJobFailed] = []

    def worker() -> None:
        try:
            while not stop.is_set() and not no_more.is_set():
                try:
                    schema = pending.get_nowait()
                except queue.Empty:
                    return
                try:
                    done[schema] = _run_work(work, schema, stop)
                    if stop_starting is not None and stop_starting(done[schema]):
                        no_more.set()
                except KeyboardInterrupt as interrupt:
                    stopped_in.append(schema)
                    if getattr(interrupt, "partial", None) is not None:
                        done[schema] = interrupt.partial
                    if signal_name(interrupt) == CANCEL:
                        cancelled.set()
                        stop.set()  # the other workers stop between batches, as on Ctrl-C
                except TenantJobFailed as failure:
                    failures.append(failure)
                    if failure.partial is not None:
                        done[schema] = failure.partial
                    stop.set()
        finally:
            connection.close()  # each worker thread opened its own
            finished.put(threading.current_thread().name)

    # Workers report their end on a queue rather than being joined: on Python 3.11
    # a join cut short by Ctrl-C can mark a thread that is still running as stopped.
    finished: queue.SimpleQueue[str] = queue.SimpleQueue()
    running = min(jobs, len(schemas))
    for number in range(running):
        threading.Thread(target=worker, name=f"tenant-worker-{number}").start()
    interrupted = None
    while running:
        try:
            # A short wait, so Ctrl-C is handled promptly whichever thread the signal reached.
            finished.get(timeout=0.1)
        except queue.Empty:
            continue
        except KeyboardInterrupt as interrupt:
            interrupted = interrupted or signal_name(interrupt)
            stop.set()
            continue
        running -= 1
    results = [done[schema] for schema in schemas if schema in done]
    if failures:
        failures[0].results = results
        raise failures[0]
    interrupted = interrupted or (CANCEL if cancelled.is_set() else None)
    if not interrupted:
        return results, None
    not_started = [schema for schema in schemas if schema not in done and schema not in stopped_in]
    return results, Interruption(
        stopped_in=sorted(stopped_in, key=schemas.index), not_started=not_started, signal=interrupted
    )


def _run_work(work: TenantWork[Result], schema: str, stop: threading.Event) -> Result:
    try:
        return work(schema, stop)
    except DatabaseError as exc:
        raise TenantJobFailed(schema, exc) from exc
