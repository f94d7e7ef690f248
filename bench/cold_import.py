"""Cold start: ``import function_app`` in a fresh process, beside eager imports of the SDKs.

The quality bar is ≤ 1.0 s and ≤ 150 MB RSS: exchangelib and msgraph-sdk must be imported lazily,
only by the worker that needs them. The baseline imports them eagerly in the same kind of fresh
process, so the ratio stands on one run.

Telemetry: with ``APPLICATIONINSIGHTS_CONNECTION_STRING`` set, the import must cost the same
(the exporter is configured by the first invocation, not by the import); the last case is that
first invocation's set-up of the exporter (azure-monitor-opentelemetry imported and configured,
sending nowhere: the endpoint is a closed local port), skipped where the package is missing.

Usage: .venv/bin/python bench/cold_import.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
PROBE = (
    "import resource, time\n"
    "started = time.perf_counter()\n"
    "{imports}\n"
    "elapsed = time.perf_counter() - started\n"
    "print(elapsed, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)\n"
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
CASES: dict[str, tuple[str, dict[str, str]]] = {
    "import function_app": ("import function_app", {}),
    "import function_app, connection string set": ("import function_app", TELEMETRY),
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


def measure(imports: str, rounds: int, settings: dict[str, str]) -> tuple[float, float]:
    environ = {
        name: value
        for name, value in os.environ.items()
        if name != "APPLICATIONINSIGHTS_CONNECTION_STRING"
    }
    times, peaks = [], []
    for _ in range(rounds):
        output = subprocess.run(
            [sys.executable, "-c", PROBE.format(imports=imports)],
            cwd=REPO_ROOT,
            env={**environ, **settings},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        times.append(float(output[0]))
        peaks.append(float(output[1]))
    return statistics.median(times), statistics.median(peaks)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    options = parser.parse_args()
    try:
        exporter = importlib.util.find_spec("azure.monitor.opentelemetry") is not None
    except ModuleNotFoundError:  # not even the azure.monitor namespace
        exporter = False
    print(f"fresh-process imports, median of {options.rounds}")
    print(f"{'case':<42} {'seconds':>8} {'peak RSS MiB':>13}")
    for name, (imports, settings) in CASES.items():
        if name in NEEDS_EXPORTER and not exporter:
            print(f"{name:<42} skipped: azure-monitor-opentelemetry is not installed")
            continue
        seconds, peak = measure(imports, options.rounds, settings)
        print(f"{name:<42} {seconds:8.3f} {peak:13.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
