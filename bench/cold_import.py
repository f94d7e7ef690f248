"""Cold start: ``import function_app`` in a fresh process, beside eager imports of the SDKs.

The quality bar is ≤ 0.5 s and ≤ 60 MB peak RSS: the host imports the app to index its
functions, so nothing only an invocation needs is imported then (exchangelib and msgraph-sdk by
the gateway of a connection's kind, the Azure clients and calbridge's services on first use),
and the pydantic models build their validators on first use. The baseline imports the SDKs
eagerly in the same kind of fresh process, so the ratio stands on one run; ``azure.functions``
alone (the host's library, which the Python worker has loaded before it imports the app) is the
floor no change of calbridge's can go under.

The app is imported from a copy of its package (``infra/package.py``: ``function_app.py``,
``functions/``, ``shared/``), without bytecode and writing none: the package ships no ``.pyc``,
so a fresh instance may have to compile every module the import reaches, and no ``__pycache__``
of the working tree makes one run cheaper than another. The libraries keep the bytecode pip
wrote when it installed them, as the platform's remote build does.

Telemetry: with ``APPLICATIONINSIGHTS_CONNECTION_STRING`` set, the import must cost the same
(the exporter is configured by the first invocation, not by the import); the exporter case is
that first invocation's set-up (azure-monitor-opentelemetry imported and configured, sending
nowhere: the endpoint is a closed local port), skipped where the package is missing. The
snapshot case is a booking request's first validation, which builds the models it uses.

The "before" case imports the app as it was at ``--baseline-ref`` (default ``87fdb75``, before
the composition root imported its services on first use and the models deferred their build),
unpacked with ``git archive`` into a temporary folder in the same way.

Cases are measured in turns (one round of every case, then the next), after one unmeasured
round, so a noisy machine weighs on all of them alike. Beside the wall time (the bar's figure)
each case shows the CPU time its process used: what another process's load on a shared machine
adds to the wall time, it does not add there.

Usage: .venv/bin/python bench/cold_import.py [--rounds 5] [--baseline-ref 87fdb75] [--no-baseline]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
from io import BytesIO
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(REPO_ROOT))

PROBE = (
    "import resource, time\n"
    "started, cpu = time.perf_counter(), time.process_time()\n"
    "{imports}\n"
    "elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu\n"
    "print(elapsed, cpu, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)\n"
)
# A connection string to nowhere (a closed local port), and nothing else leaving the machine.
TELEMETRY = {
    "APPLICATIONINSIGHTS_CONNECTION_STRING": (
        "InstrumentationKey=00000000-0000-0000-0000-000000000000;"
        "IngestionEndpoint=http://127.0.0.1:9/"
    ),
    "APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL": "true",
    "APPLICATIONINSIGHTS_SDKSTATS_DISABLED": "true",
    "APPLICATIONINSIGHTS_CONTROLPLANE_DISABLED": "true",
    "OTEL_EXPERIMENTAL_RESOURCE_DETECTORS": "azure_app_service",
}
SNAPSHOT = (
    '{"version": 1, "status": "booked", "start": "2026-03-02T09:00:00+01:00",'
    ' "end": "2026-03-02T09:30:00+01:00", "timeZone": "Europe/Berlin", "title": "Advice",'
    ' "organizerStaffId": "s1", "staff": [{"staffId": "s1", "role": "organizer"}]}'
)
CASES: dict[str, tuple[str, dict[str, str]]] = {
    "floor: azure.functions alone": ("import azure.functions", {}),
    "import function_app": ("import function_app", {}),
    "import function_app, connection string set": ("import function_app", TELEMETRY),
    "  + first snapshot validated": (
        "import function_app\n"
        "from shared.models import AppointmentSnapshot\n"
        f"AppointmentSnapshot.model_validate_json({SNAPSHOT!r})",
        {},
    ),
    "  + first invocation: exporter set up": (
        "import function_app\n"
        "from shared.observability import export\n"
        "assert export.ensure_configured()",
        TELEMETRY,
    ),
    "baseline: + exchangelib, msgraph (eager)": (
        "import function_app\nimport exchangelib\nfrom msgraph import GraphServiceClient",
        {},
    ),
}
NEEDS_EXPORTER = {"  + first invocation: exporter set up"}
DEFAULT_BASELINE_REF = "87fdb75"
# What the app package holds (``.funcignore`` leaves the rest out), for a commit's tree.
PACKAGE_PATHS = ("function_app.py", "host.json", "requirements.txt", "functions", "shared")


def copy_package(into: Path) -> None:
    """The app's package as ``infra/package.py`` builds it, unpacked into ``into``."""
    from infra.package import package_files

    for name in package_files():
        target = into / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(REPO_ROOT / name, target)


def unpack_package(ref: str, into: Path) -> None:
    """The app's files at ``ref`` (git archive), without touching the repository's worktrees."""
    archive = subprocess.run(
        ["git", "archive", "--format=tar", ref, "--", *PACKAGE_PATHS],
        cwd=REPO_ROOT,
        capture_output=True,
        check=True,
    ).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")


def measure_once(app: Path, imports: str, settings: dict[str, str]) -> tuple[float, ...]:
    environ = {
        name: value
        for name, value in os.environ.items()
        if name not in ("APPLICATIONINSIGHTS_CONNECTION_STRING", "PYTHONPYCACHEPREFIX")
    }
    output = subprocess.run(
        [sys.executable, "-c", PROBE.format(imports=imports)],
        cwd=app,
        env={**environ, "PYTHONDONTWRITEBYTECODE": "1", **settings},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return tuple(float(figure) for figure in output)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--baseline-ref", default=DEFAULT_BASELINE_REF)
    parser.add_argument("--no-baseline", action="store_true")
    options = parser.parse_args()
    try:
        exporter = importlib.util.find_spec("azure.monitor.opentelemetry") is not None
    except ModuleNotFoundError:  # not even the azure.monitor namespace
        exporter = False
    cases = {n: c for n, c in CASES.items() if exporter or n not in NEEDS_EXPORTER}
    before = f"before ({options.baseline_ref}): import function_app"
    if not options.no_baseline:
        cases[before] = CASES["import function_app"]
    # wall seconds, CPU seconds, peak RSS MiB per round
    figures: dict[str, list[tuple[float, ...]]] = {name: [] for name in cases}
    with tempfile.TemporaryDirectory(prefix="calbridge-package-") as folder:
        app, baseline = Path(folder) / "app", Path(folder) / "baseline"
        copy_package(app)
        if not options.no_baseline:
            unpack_package(options.baseline_ref, baseline)
        for round_number in range(options.rounds + 1):
            for name, (imports, settings) in cases.items():
                measured = measure_once(baseline if name == before else app, imports, settings)
                if round_number:  # the first round only warms the file cache
                    figures[name].append(measured)
    print(f"fresh-process imports from the app package (no .pyc), median of {options.rounds}")
    print(f"{'case':<42} {'seconds':>8} {'CPU s':>6} {'peak RSS MiB':>13}")
    for name in [*CASES, *([before] if before in cases else [])]:
        if name not in cases:
            print(f"{name:<42} skipped: azure-monitor-opentelemetry is not installed")
            continue
        wall, cpu, peak = (statistics.median(column) for column in zip(*figures[name], strict=True))
        print(f"{name:<42} {wall:8.3f} {cpu:6.3f} {peak:13.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
