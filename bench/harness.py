"""What the benchmark scripts share: the Exchange simulator in a process of its own (so its work
does not share calbridge's interpreter), its control API, and small statistics helpers."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class SimProcess:
    """``python -m sim`` started with a configuration; ``urls`` as it printed them."""

    process: subprocess.Popen[str]
    urls: dict[str, str]

    def control(self, method: str, path: str, body: Any = None) -> Any:
        """Call the simulator's control API (``/control/<path>``); the JSON answer."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(  # noqa: S310 - the simulator on loopback
            f"{self.urls['control']}/{path}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json"} if data is not None else {},
        )
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
            raw = response.read()
        return json.loads(raw) if raw else None

    def booking(self, method: str, path: str) -> Any:
        """Call the booking-platform stand-in (``/received``, ``/respond``)."""
        request = urllib.request.Request(f"{self.urls['booking']}{path}", method=method)  # noqa: S310
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
            raw = response.read()
        return json.loads(raw) if raw else None

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def start_sim_process(config: dict[str, Any], *, validate_ews: bool = False) -> SimProcess:
    """Start the simulator on a free port. Schema validation of EWS responses is off unless
    asked for: tests run with it, benchmarks measure calbridge rather than the validator."""
    config_path = Path(tempfile.mkdtemp(prefix="calbridge-bench-")) / "sim.json"
    config_path.write_text(json.dumps(config))
    command = [sys.executable, "-m", "sim", "--config", str(config_path), "--port", "0"]
    if validate_ews:
        command.append("--validate-ews")
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    urls: dict[str, str] = json.loads(process.stdout.readline())
    return SimProcess(process, urls)


def percentile(values: list[float], fraction: float) -> float:
    """The nearest-rank percentile of ``values`` (``fraction`` 0.5 → the median)."""
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def rss_mib() -> float:
    """This process's resident memory, MiB (Linux ``/proc``; 0.0 elsewhere)."""
    with contextlib.suppress(OSError), open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid: int, *, descendants: bool = True) -> float:
    """CPU time (user + system) a process and its descendants have used so far (Linux
    ``/proc``; 0.0 elsewhere). ``descendants=False``: the process's own (for a script that
    started Azurite and the simulator as its children and measures itself beside them)."""
    ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    stats: dict[int, tuple[int, float]] = {}  # pid → (parent, seconds)
    for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else []:
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
        except OSError:
            continue
        fields = raw.rpartition(")")[2].split()
        # After the command: state, ppid, ..., utime (14th field overall), stime (15th).
        stats[int(entry.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / ticks)
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        total += stats.get(current, (0, 0.0))[1]
        if descendants:
            todo += [child for child, (parent, _) in stats.items() if parent == current]
    return total
