"""The repository stands alone: users clone calbridge and nothing beside it. Nothing tracked
points outside the repository, and Microsoft's EWS schema it carries is the published one,
unmodified (the hashes its README states)."""

from __future__ import annotations

import hashlib
import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
XSD = REPO / "sim" / "ews" / "xsd"
# A path that climbs out of the repository into a sibling folder ("../" + a name).
_OUTSIDE = re.compile(r"\.\./(?!\.)" + "shared" + r"\b|" + "ews" + "-schema/")


def tracked_text_files() -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True
    ).stdout.split(b"\0")
    files = []
    for name in filter(None, listed):
        path = REPO / name.decode()
        if path.suffix in {".xsd", ".json"} and path.stat().st_size > 100_000:
            continue  # Microsoft's schema and the lock file: data, not references
        if path.is_file():
            files.append(path)
    return files


def test_no_tracked_file_reaches_outside_the_repository() -> None:
    offenders = []
    for path in tracked_text_files():
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        for number, line in enumerate(text.splitlines(), 1):
            if _OUTSIDE.search(line):
                offenders.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert offenders == []


@pytest.mark.parametrize("name", ["messages.xsd", "types.xsd"])
def test_the_ews_schema_is_microsofts_unmodified(name: str) -> None:
    readme = (XSD / "README.md").read_text(encoding="utf-8")
    stated = re.search(rf"`{re.escape(name)}` `([0-9a-f]{{64}})`", readme)
    assert stated is not None, f"xsd/README.md states no hash for {name}"
    assert hashlib.sha256((XSD / name).read_bytes()).hexdigest() == stated.group(1)
