"""The app package: the repository's files minus what ``.funcignore`` lists, as a zip.

``python -m infra.package --output PATH`` writes it and prints its path; ``infra/deploy.sh``
uploads it. It carries no dependencies: Flex Consumption installs ``requirements.txt`` itself
when the package is deployed with a remote build (the platform runs pip on Linux for the app's
Python version), so nothing built on the deploying machine ends up in Azure.

Files are chosen by git with ``.funcignore`` as the only ignore file, read with the gitignore
rules the Functions Core Tools and azd apply to it: tracked and untracked files alike, and
``.gitignore`` plays no part (the package is what ``.funcignore`` says, whichever tool builds it).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import zipfile
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FUNCIGNORE = ".funcignore"


def _git_files(root: Path, *options: str) -> set[str]:
    listed = subprocess.run(
        ["git", "-C", str(root), "ls-files", "-z", *options],
        capture_output=True,
        check=True,
    ).stdout.decode("utf-8")
    return {name for name in listed.split("\0") if name}


def package_files(root: Path = REPO) -> list[str]:
    """The files the package holds, relative to ``root``, sorted."""
    exclude = f"--exclude-from={root / FUNCIGNORE}"
    # --others honours the exclude file; --cached lists every tracked file, so the tracked ones
    # it matches are listed again with --ignored and taken out.
    candidates = _git_files(root, "--cached", "--others", exclude)
    ignored_tracked = _git_files(root, "--cached", "--ignored", exclude)
    return sorted(
        name for name in candidates - ignored_tracked if (root / name).is_file()
    )  # a tracked file deleted from the work tree is not packaged


def build(output: Path, root: Path = REPO) -> list[str]:
    """Write the zip; the files it holds."""
    files = package_files(root)
    if "host.json" not in files or "requirements.txt" not in files:
        raise SystemExit(f"{root}: host.json and requirements.txt must be packaged ({FUNCIGNORE})")
    output.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(output, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name in files:
            archive.write(root / name, arcname=name)
    return files


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, required=True, help="where to write the zip")
    parser.add_argument("--list", action="store_true", help="also print every packaged file")
    options = parser.parse_args(argv)
    files = build(options.output)
    if options.list:
        for name in files:
            print(name, file=sys.stderr)
    print(options.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
