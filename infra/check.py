"""The infra checks ``make infra-check`` runs (and so ``make test``):

1. every ``.bicep`` file under ``infra/`` parses with pycep-parser (a Bicep grammar in Python;
   it finds syntax errors, not undefined names or wrong property types: that needs the Bicep
   compiler, which is not installable here);
2. checkov's Bicep checks pass: checkov runs from its own virtual environment (it pins an old
   ``packaging`` the test tools cannot live with), offline (``--skip-download``), and its JSON
   report is judged here because checkov itself exits 0 when a file does not parse and then
   runs no check on it. A failed check fails; a check skipped inline must say why
   (``// checkov:skip=CKV_...: reason``).

``python -m infra.check --checkov .venv-checkov/bin/checkov``; exit status 1 names every
problem.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

INFRA = Path(__file__).resolve().parent
# What checkov writes as the reason of a skip comment that gives none.
NO_REASON = {"", "No comment provided"}


def bicep_files(directory: Path = INFRA) -> list[Path]:
    return sorted(directory.rglob("*.bicep"))


def syntax_errors(paths: Iterable[Path]) -> list[str]:
    """One line per file that does not parse, with the parser's position and expectation."""
    from pycep import BicepParser

    parser = BicepParser()
    problems = []
    for path in paths:
        try:
            parser.parse(text=path.read_text(encoding="utf-8"))
        except Exception as exc:  # lark raises several error types; each is a finding here
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            problems.append(f"{path}: does not parse: {type(exc).__name__}: {first_line}")
    return problems


def run_checkov(checkov: Path, directory: Path = INFRA) -> Any:
    """checkov's JSON report for ``directory``'s Bicep files (offline)."""
    completed = subprocess.run(
        [
            str(checkov),
            "--directory",
            str(directory),
            "--framework",
            "bicep",
            "--skip-download",
            "--output",
            "json",
        ],
        capture_output=True,
        text=True,
        check=False,  # exit 1 on failed checks: the report says which
    )
    try:
        return json.loads(completed.stdout)
    except ValueError as exc:
        tail = "\n".join(completed.stderr.strip().splitlines()[-5:])
        raise RuntimeError(
            f"checkov wrote no JSON report (exit {completed.returncode}): {tail}"
        ) from exc


def verdict(report: Any) -> list[str]:
    """What is wrong with a checkov JSON report: parsing errors, failed checks, skips without a
    reason, or nothing checked at all. Empty: it passes."""
    reports = report if isinstance(report, list) else [report]
    bicep = [r for r in reports if isinstance(r, dict) and r.get("check_type") == "bicep"]
    if not bicep:
        return ["checkov checked no Bicep file (no bicep report)"]
    problems: list[str] = []
    for section in bicep:
        summary = section.get("summary", {})
        results = section.get("results", {})
        errors = summary.get("parsing_errors", 0)
        if errors:
            files = ", ".join(results.get("parsing_errors", [])) or "(files not named)"
            problems.append(f"checkov could not parse {errors} file(s), so checked none: {files}")
        if not summary.get("resource_count"):
            problems.append("checkov found no resource to check")
        for failed in results.get("failed_checks", []):
            problems.append(
                f"{failed['check_id']} failed ({failed['check_name']}) on {failed['resource']} "
                f"in {failed['file_path']} lines {failed['file_line_range']}"
            )
        for skipped in results.get("skipped_checks", []):
            reason = (skipped.get("check_result", {}).get("suppress_comment") or "").strip()
            if reason in NO_REASON:
                problems.append(
                    f"{skipped['check_id']} is skipped without a reason on {skipped['resource']} "
                    f"in {skipped['file_path']}: write // checkov:skip={skipped['check_id']}: why"
                )
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkov", type=Path, required=True, help="the checkov executable")
    parser.add_argument("--directory", type=Path, default=INFRA)
    options = parser.parse_args(argv)

    files = bicep_files(options.directory)
    problems = [] if files else [f"no .bicep file under {options.directory}"]
    problems += syntax_errors(files)
    report = run_checkov(options.checkov, options.directory)
    problems += verdict(report)
    if problems:
        print(f"infra-check: {len(problems)} problem(s):", file=sys.stderr)
        for problem in problems:
            print(f"  - {problem}", file=sys.stderr)
        return 1
    reports = report if isinstance(report, list) else [report]
    summary = next(r["summary"] for r in reports if r.get("check_type") == "bicep")
    print(
        f"infra-check: {len(files)} Bicep files parse; checkov {summary['checkov_version']}: "
        f"{summary['passed']} passed, {summary['failed']} failed, "
        f"{summary['skipped']} skipped with a reason"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
