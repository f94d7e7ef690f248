"""Cold start: ``import function_app`` in a fresh process, beside eager imports of the SDKs.

The quality bar is ≤ 1.0 s and ≤ 150 MB RSS: exchangelib and msgraph-sdk must be imported lazily,
only by the worker that needs them. The baseline imports them eagerly in the same kind of fresh
process, so the ratio stands on one run.

Usage: .venv/bin/python bench/cold_import.py [--rounds 5]
"""

from __future__ import annotations

import argparse
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
CASES = {
    "import function_app": "import function_app",
    "baseline: + exchangelib, msgraph (eager)": (
        "import function_app\nimport exchangelib\nfrom msgraph import GraphServiceClient"
    ),
}


def measure(imports: str, rounds: int) -> tuple[float, float]:
    times, peaks = [], []
    for _ in range(rounds):
        output = subprocess.run(
            [sys.executable, "-c", PROBE.format(imports=imports)],
            cwd=REPO_ROOT,
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
    print(f"fresh-process imports, median of {options.rounds}")
    print(f"{'case':<42} {'seconds':>8} {'peak RSS MiB':>13}")
    for name, imports in CASES.items():
        seconds, peak = measure(imports, options.rounds)
        print(f"{name:<42} {seconds:8.3f} {peak:13.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
