"""Running one job per tenant, serially or ``jobs`` tenants at a time.

With ``jobs`` > 1, tenants run in worker threads, each on its own database
connection (Django's connections are per thread); results keep tenant order.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from django.db import DatabaseError, connection

Result = TypeVar("Result")
TenantWork = Callable[[str, threading.Event], Result]


class TenantJobFailed(Exception):
    """The database failed in a way no single row explains; the run stops."""

    def __init__(self, schema: str, cause: DatabaseError):
        super().__init__(f"{schema}: {str(cause).strip()}")
        self.schema = schema


@dataclass
class Interruption:
    """Ctrl-C stopped the run: committed batches are kept, a re-run finishes the job."""

    stopped_in: list[str]  # tenants being worked on when it came
    not_started: list[str]


def for_each_tenant(
    schemas: list[str], jobs: int, work: TenantWork[Result]
) -> tuple[list[Result], Interruption | None]:
    """Run ``work`` on each tenant, ``jobs`` at a time; results come back in the order of ``schemas``.

    ``work`` gets an event set on Ctrl-C (parallel workers never see the signal
    themselves) and stops between batches by raising KeyboardInterrupt.
    """
    if jobs == 1:
        # In the calling thread and on its connection (tests run inside their transaction).
        results = []
        for number, schema in enumerate(schemas):
            try:
                results.append(_run_work(work, schema, threading.Event()))
            except KeyboardInterrupt:
                return results, Interruption(stopped_in=[schema], not_started=schemas[number + 1 :])
        return results, None
    return _for_each_tenant_in_parallel(schemas, jobs, work)


def _for_each_tenant_in_parallel(
    schemas: list[str], jobs: int, work: TenantWork[Result]
) -> tuple[list[Result], Interruption | None]:
    pending: queue.SimpleQueue[str] = queue.SimpleQueue()
    for schema in schemas:
        pending.put(schema)
    stop = threading.Event()
    done: dict[str, Result] = {}
    stopped_in: list[str] = []
    failures: list[TenantJobFailed] = []

    def worker() -> None:
        try:
            while not stop.is_set():
                try:
                    schema = pending.get_nowait()
                except queue.Empty:
                    return
                try:
                    done[schema] = _run_work(work, schema, stop)
                except KeyboardInterrupt:
                    stopped_in.append(schema)
                except TenantJobFailed as exc:
                    failures.append(exc)
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
    interrupted = False
    while running:
        try:
            # A short wait, so Ctrl-C is handled promptly whichever thread the signal reached.
            finished.get(timeout=0.1)
        except queue.Empty:
            continue
        except KeyboardInterrupt:
            interrupted = True
            stop.set()
            continue
        running -= 1
    if failures:
        raise failures[0]
    results = [done[schema] for schema in schemas if schema in done]
    if not interrupted:
        return results, None
    not_started = [schema for schema in schemas if schema not in done and schema not in stopped_in]
    return results, Interruption(stopped_in=sorted(stopped_in, key=schemas.index), not_started=not_started)


def _run_work(work: TenantWork[Result], schema: str, stop: threading.Event) -> Result:
    try:
        return work(schema, stop)
    except DatabaseError as exc:
        raise TenantJobFailed(schema, exc) from exc
