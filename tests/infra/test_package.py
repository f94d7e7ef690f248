"""The app package (``infra/package.py``): the repository minus what ``.funcignore`` lists,
read with gitignore rules by git, tracked and untracked files alike."""

from __future__ import annotations

import subprocess
import zipfile
from pathlib import Path

from infra.package import build, package_files
from tests.infra.templates import REPO


def git(root: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True)


def test_the_package_is_the_app_and_nothing_else() -> None:
    files = package_files()
    assert {"function_app.py", "host.json", "requirements.txt"} <= set(files)
    tracked = subprocess.run(
        ["git", "-C", str(REPO), "ls-files", "shared", "functions"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert set(tracked) <= set(files)  # every module the app imports
    roots = {name.split("/")[0] for name in files}
    assert roots == {"function_app.py", "host.json", "requirements.txt", "shared", "functions"}
    assert not [name for name in files if "__pycache__" in name or name.endswith(".pyc")]


def test_funcignore_alone_decides_for_tracked_and_untracked_files(tmp_path: Path) -> None:
    root = tmp_path / "app"
    (root / "shared").mkdir(parents=True)
    (root / "tests").mkdir()
    for name in ("host.json", "requirements.txt", "function_app.py", "shared/a.py"):
        (root / name).write_text("x\n")
    (root / "tests/test_a.py").write_text("x\n")
    (root / ".funcignore").write_text("# comment\ntests\n*.log\n.funcignore\n")
    (root / ".gitignore").write_text("shared/generated.py\n")
    git(root, "init", "-q")
    git(root, "add", ".")
    (root / "shared/new.py").write_text("untracked but not ignored\n")
    (root / "shared/generated.py").write_text("git-ignored, not funcignored\n")
    (root / "debug.log").write_text("funcignored\n")
    assert package_files(root) == [
        ".gitignore",
        "function_app.py",
        "host.json",
        "requirements.txt",
        "shared/a.py",
        "shared/generated.py",
        "shared/new.py",
    ]
    (root / "shared/a.py").unlink()  # deleted from the work tree, still in the index
    assert "shared/a.py" not in package_files(root)
    archive = tmp_path / "out" / "app.zip"
    assert build(archive, root) == package_files(root)
    with zipfile.ZipFile(archive) as opened:
        assert sorted(opened.namelist()) == package_files(root)
        assert opened.read("shared/new.py") == b"untracked but not ignored\n"
