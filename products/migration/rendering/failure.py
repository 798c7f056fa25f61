"""The closing error of a migrate_images run that did not end well: what went wrong, in one line, and the exit
status with its meaning (the report above, or in its files, has the details)."""

from __future__ import annotations

from products.migration.report import ExitCode, MigrationReport


def failure_message(report: MigrationReport) -> str:
    """The error migrate_images ends with when the exit status is not 0: every reason, then the status."""
    problems = []
    if report.failure:
        problems.append(f"Stopped by a database failure in {report.failure}")
    if report.interruption:
        stopped = ", ".join(report.interruption.stopped_in) or "between tenants"
        by = " by SIGTERM" if report.exit_code == ExitCode.TERMINATED else ""
        problems.append(f"interrupted{by} in {stopped}: committed batches are kept, re-run to finish")
    if report.refused_tenants:
        problems.append(f"refused by the preflight, not touched: {', '.join(report.refused_tenants)}")
    for tenant in report.tenants:
        if tenant.blocked:
            pids = ", ".join(str(blocker.pid) for blocker in tenant.blocked.blockers) or "unknown"
            problems.append(f"{tenant.schema} blocked on {tenant.blocked.what} by pid {pids}")
    if report.failed_checks:
        problems.append(f"{len(report.failed_checks)} check(s) FAIL")
    if report.errors:
        problems.append(f"{len(report.errors)} product(s) not migrated (listed above)")
    if report.busy_tenants:
        problems.append(f"busy tenant(s) skipped: {', '.join(report.busy_tenants)}")
    if report.wave_stop:
        stop = report.wave_stop
        problems.append(
            f"stopped starting tenants once {len(stop.failed)} had failed (--max-failures {stop.max_failures}): "
            f"{len(stop.not_started)} not started"
        )
    return "; ".join(problems) + f". Exit status {int(report.exit_code)}: {report.exit_code.meaning}."
