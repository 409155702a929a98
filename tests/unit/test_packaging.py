"""One installable package: everything it needs is in the wheel, nothing outside it is sought.

The packages are listed in pyproject.toml (models/ installs as the package data
``beatwatch.models``, which discovery cannot express), so these tests keep that
list whole. The last one builds the wheel and runs the installed command.
"""

from __future__ import annotations

import ast
import fnmatch
import re
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

from tests.support.paths import REPO_ROOT

tomllib = pytest.importorskip("tomllib")

CODE_ROOTS = ("beatwatch", "producer", "detector", "trainer")
SKIPPED_DIRS = {"__pycache__"}


def setuptools_config() -> dict[str, Any]:
    with (REPO_ROOT / "pyproject.toml").open("rb") as handle:
        config: dict[str, Any] = tomllib.load(handle)["tool"]["setuptools"]
    return config


def package_dir(name: str, mapping: dict[str, str]) -> Path:
    """The source directory of a dotted package name, through package-dir."""
    for prefix, directory in sorted(mapping.items(), key=lambda item: -len(item[0])):
        if name == prefix or name.startswith(prefix + "."):
            rest = name[len(prefix) :].lstrip(".")
            return REPO_ROOT / directory / Path(*rest.split(".")) if rest else REPO_ROOT / directory
    return REPO_ROOT / Path(*name.split("."))


def directories_with_files() -> dict[str, Path]:
    """Every directory the wheel must carry, by its dotted package name."""
    found: dict[str, Path] = {}
    roots = [(root, REPO_ROOT / root) for root in CODE_ROOTS]
    roots.append(("beatwatch.models", REPO_ROOT / "models"))
    for name, top in roots:
        for directory in [top, *sorted(p for p in top.rglob("*") if p.is_dir())]:
            parts = directory.relative_to(top).parts
            if SKIPPED_DIRS & set(parts) or any(part.startswith(".") for part in parts):
                continue
            if any(path.is_file() for path in directory.iterdir()):
                found[".".join([name, *parts])] = directory
    return found


def test_every_directory_of_code_or_data_is_a_listed_package() -> None:
    config = setuptools_config()
    listed = set(config["packages"])
    expected = directories_with_files()
    missing = sorted(set(expected) - listed)
    assert not missing, f"add {missing} to [tool.setuptools] packages in pyproject.toml"
    mapping = config.get("package-dir", {})
    absent = sorted(name for name in listed if not package_dir(name, mapping).is_dir())
    assert not absent, f"listed in pyproject.toml but not in the tree: {absent}"


def test_every_data_file_is_package_data() -> None:
    """A file that is not Python must match a package-data pattern of its package or above."""
    config = setuptools_config()
    patterns: dict[str, list[str]] = config.get("package-data", {})
    mapping = config.get("package-dir", {})
    unshipped = []
    for name, directory in directories_with_files().items():
        for path in sorted(directory.iterdir()):
            if not path.is_file() or path.suffix in {".py", ".pyc"}:
                continue
            ancestors = [".".join(name.split(".")[:i]) for i in range(len(name.split(".")), 0, -1)]
            shipped = any(
                fnmatch.fnmatch(path.relative_to(package_dir(a, mapping)).as_posix(), pattern)
                for a in ancestors
                for pattern in patterns.get(a, [])
            )
            if not shipped:
                unshipped.append(path.relative_to(REPO_ROOT).as_posix())
    assert not unshipped, f"add to [tool.setuptools.package-data]: {unshipped}"


def reaches_outside(tree: ast.AST) -> list[int]:
    """Lines that build a path above the package or name a directory beside it.

    That is ``parents[n]``, ``.parent.parent``, or a string (not a docstring)
    starting with ``../`` or naming ``shared/data``.
    """
    docstrings = {
        id(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
    }
    lines = []
    for node in ast.walk(tree):
        above = (
            isinstance(node, ast.Subscript)
            and isinstance(node.value, ast.Attribute)
            and node.value.attr == "parents"
        ) or (
            isinstance(node, ast.Attribute)
            and node.attr == "parent"
            and isinstance(node.value, ast.Attribute)
            and node.value.attr == "parent"
        )
        beside = (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in docstrings
            and re.search(r"^\.\./|shared/data", node.value) is not None
        )
        if above or beside:
            lines.append(getattr(node, "lineno", 0))
    return lines


def test_installed_code_never_looks_beside_its_package() -> None:
    """No path built from ``__file__`` leaves the package; nothing names ../shared."""
    offenders = [
        f"{path.relative_to(REPO_ROOT)}:{line}"
        for root in CODE_ROOTS
        for path in sorted((REPO_ROOT / root).rglob("*.py"))
        for line in reaches_outside(ast.parse(path.read_text(encoding="utf-8")))
    ]
    assert not offenders, f"paths outside the installed package: {offenders}"


@pytest.mark.subprocess
@pytest.mark.slow
def test_a_non_editable_install_runs_and_finds_its_default_model(tmp_path: Path) -> None:
    """The wheel, unpacked as pip installs it, before the source tree on the path."""
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), "."],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert build.returncode == 0, build.stderr
    (wheel,) = tmp_path.glob("beatwatch-*.whl")
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        archive.extractall(site)
    for name in ("artifact.json", "model.keras"):
        assert f"beatwatch/models/ecg5000/{name}" in names
    # The editable install's finder comes after sys.path: the unpacked wheel wins.
    code = (
        "import sys, beatwatch.artifact as a; from beatwatch import cli;"
        "print(a.SHIPPED_MODEL_DIR); sys.exit(cli.main(['detect', '--help']))"
    )
    run = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin", "COLUMNS": "300"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    default = Path(run.stdout.splitlines()[0])
    assert default == site / "beatwatch" / "models" / "ecg5000"
    assert (default / "artifact.json").is_file() and (default / "model.keras").is_file()
    assert f"default {default}]" in run.stdout
