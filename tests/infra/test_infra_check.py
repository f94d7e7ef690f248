"""``infra/check.py``'s judgement of checkov's JSON report and of the Bicep syntax. checkov
itself runs in ``make infra-check`` (from its own virtual environment); here its report's shape
is given, with each way it can go wrong."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from infra.check import bicep_files, syntax_errors, verdict


def report(
    *,
    failed: list[dict[str, Any]] | None = None,
    skipped: list[dict[str, Any]] | None = None,
    parsing_errors: list[str] | None = None,
    resource_count: int = 12,
) -> dict[str, Any]:
    return {
        "check_type": "bicep",
        "results": {
            "passed_checks": [],
            "failed_checks": failed or [],
            "skipped_checks": skipped or [],
            "parsing_errors": parsing_errors or [],
        },
        "summary": {
            "passed": 10,
            "failed": len(failed or []),
            "skipped": len(skipped or []),
            "parsing_errors": len(parsing_errors or []),
            "resource_count": resource_count,
            "checkov_version": "3.3.30",
        },
    }


def check(check_id: str, reason: str | None = None) -> dict[str, Any]:
    result: dict[str, Any] = {"result": "SKIPPED" if reason is not None else "FAILED"}
    if reason is not None:
        result["suppress_comment"] = reason
    return {
        "check_id": check_id,
        "check_name": "a rule",
        "check_result": result,
        "resource": "Microsoft.Storage/storageAccounts.account",
        "file_path": "/modules/storage.bicep",
        "file_line_range": [37, 59],
    }


def test_a_clean_report_passes() -> None:
    assert verdict(report()) == []
    assert verdict([report(), {"check_type": "secrets"}]) == []


def test_a_file_checkov_could_not_parse_fails_although_checkov_exits_0() -> None:
    [problem] = verdict(report(parsing_errors=["/work/infra/main.bicep"]))
    assert "could not parse 1 file" in problem
    assert "main.bicep" in problem


def test_a_failed_check_fails_naming_check_resource_and_lines() -> None:
    [problem] = verdict(report(failed=[check("CKV_AZURE_35")]))
    assert "CKV_AZURE_35 failed" in problem
    assert "storage.bicep lines [37, 59]" in problem


def test_a_skip_must_say_why() -> None:
    assert verdict(report(skipped=[check("CKV_AZURE_59", " the app has no fixed addresses")])) == []
    problems = verdict(
        report(skipped=[check("CKV_AZURE_59", "No comment provided"), check("CKV_AZURE_35", "")])
    )
    assert [p.split()[0] for p in problems] == ["CKV_AZURE_59", "CKV_AZURE_35"]
    assert all("without a reason" in p for p in problems)


def test_nothing_checked_is_no_pass() -> None:
    # checkov's answer when it found nothing of the framework to scan: a bare summary.
    empty = {"passed": 0, "failed": 0, "skipped": 0, "parsing_errors": 0, "resource_count": 0}
    assert verdict(empty) == ["checkov checked no Bicep file (no bicep report)"]
    assert verdict(report(resource_count=0)) == ["checkov found no resource to check"]


def test_every_template_parses_and_a_syntax_error_is_named(tmp_path: Path) -> None:
    assert len(bicep_files()) >= 2
    assert syntax_errors(bicep_files()) == []
    broken = tmp_path / "broken.bicep"
    broken.write_text("param location string\nresource x 'Microsoft.Web/sites@2024-04-01' = {\n")
    [problem] = syntax_errors([broken])
    assert problem.startswith(f"{broken}: does not parse:")
