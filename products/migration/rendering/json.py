"""The report as JSON: its dataclasses as they are, plus what their properties compute."""

from __future__ import annotations

import dataclasses
import json

from products.migration.report import MigrationReport


def report_as_dict(report: MigrationReport) -> dict:
    data = dataclasses.asdict(report)
    data["started_at"] = report.started_at.isoformat()
    data["total"] = dataclasses.asdict(report.total)
    data["seconds"] = report.seconds
    data["exit_code"] = int(report.exit_code)
    for tenant, tenant_data in zip(report.tenants, data["tenants"], strict=True):
        tenant_data["status"] = tenant.status
        if tenant.validation:
            tenant_data["validation"]["passed"] = tenant.validation.passed
            for check, check_data in zip(tenant.validation.checks, tenant_data["validation"]["checks"], strict=True):
                check_data["passed"] = check.passed
    return data


def render_json(report: MigrationReport) -> str:
    return json.dumps(report_as_dict(report), indent=2, ensure_ascii=False) + "\n"
