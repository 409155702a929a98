"""Model roots: publish, activate, list, the pointer's checks, and `beatwatch model`."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from beatwatch.artifact import SHIPPED_MODEL_DIR, content_sha256, load_artifact
from beatwatch.cli import main
from beatwatch.errors import ArtifactError
from beatwatch.model_store import (
    POINTER_FILE,
    activate,
    current_dir,
    is_model_root,
    list_versions,
    publish,
    read_pointer,
)


def variant(target: Path, **changes: Any) -> Path:
    """A copy of the shipped artifact with ``changes`` to artifact.json, sealed again."""
    shutil.copytree(SHIPPED_MODEL_DIR, target)
    config = json.loads((target / "artifact.json").read_text())
    config.update(changes)
    content = content_sha256(target / "model.keras", config)
    config["content_sha256"] = content
    config["model_version"] = f"{config['name']}-{content[:12]}"
    (target / "artifact.json").write_text(json.dumps(config))
    return target


@pytest.fixture(scope="module")
def two(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("variants")
    threshold = json.loads((SHIPPED_MODEL_DIR / "artifact.json").read_text())["threshold"]
    return (
        variant(base / "a"),
        variant(base / "b", threshold={**threshold, "value": threshold["value"] * 1.5}),
    )


def test_publish_switches_and_activate_rolls_back(two: tuple[Path, Path], tmp_path: Path) -> None:
    a, b = two
    root = tmp_path / "root"
    first = publish(a, root)
    assert is_model_root(root) and read_pointer(root) == f"versions/{first.model_version}"
    second = publish(b, root)
    assert second.model_version != first.model_version
    assert load_artifact(current_dir(root)).model_version == second.model_version
    assert list_versions(root) == sorted([first.model_version, second.model_version])
    activate(root, first.model_version)
    assert current_dir(root).name == first.model_version
    # The same model again is the same version: nothing new, no temporary left.
    publish(a, root)
    assert list_versions(root) == sorted([first.model_version, second.model_version])
    assert sorted(p.name for p in root.iterdir()) == [POINTER_FILE, "versions"]
    assert not [p for p in (root / "versions").iterdir() if p.name.startswith(".")]


def test_publish_without_switch_keeps_current(two: tuple[Path, Path], tmp_path: Path) -> None:
    a, b = two
    first = publish(a, tmp_path)
    second = publish(b, tmp_path, switch=False)
    assert current_dir(tmp_path).name == first.model_version
    assert second.model_version in list_versions(tmp_path)


def test_publish_refuses(two: tuple[Path, Path], tmp_path: Path) -> None:
    a, _ = two
    legacy = shutil.copytree(a, tmp_path / "legacy")
    config = json.loads((legacy / "artifact.json").read_text())
    del config["content_sha256"]
    (legacy / "artifact.json").write_text(json.dumps(config))
    with pytest.raises(ArtifactError, match="before content checksums"):
        publish(legacy, tmp_path / "r1")
    with pytest.raises(ArtifactError, match="is an artifact directory, not a model root"):
        publish(a, shutil.copytree(a, tmp_path / "art"))
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "notes.txt").write_text("mine")
    with pytest.raises(ArtifactError, match="non-empty directory without CURRENT or versions/"):
        publish(a, tmp_path / "home")
    assert sorted(p.name for p in (tmp_path / "home").iterdir()) == ["notes.txt"]
    broken = shutil.copytree(a, tmp_path / "broken")
    (broken / "model.keras").write_bytes(b"not a zip")
    with pytest.raises(ArtifactError, match="checksum mismatch"):
        publish(broken, tmp_path / "r2")
    assert not (tmp_path / "r2").exists()


@pytest.mark.tensorflow
def test_activate_refuses_another_input_length(two: tuple[Path, Path], tmp_path: Path) -> None:
    from beatwatch.artifact import save_artifact
    from beatwatch.scoring import MinMax
    from tests.unit.test_artifact import record, tiny_model

    a, _ = two
    root = tmp_path / "root"
    publish(a, root)
    scaling = MinMax.fit(np.zeros((2, 8), np.float32), "global")
    short = save_artifact(tmp_path / "short", tiny_model(), record(scaling), "short")
    with pytest.raises(ArtifactError, match=r"takes beats of 8 samples, the current .* of 140"):
        publish(short.path, root)
    assert list_versions(root) == [load_artifact(a).model_version]  # nothing copied
    assert current_dir(root).name == load_artifact(a).model_version
    with pytest.raises(ArtifactError, match="no version nope"):
        activate(root, "nope")
    with pytest.raises(ArtifactError, match="not a version name"):
        activate(root, "../x")


@pytest.mark.parametrize(
    "pointer",
    [
        "",
        "x",
        "versions",
        "versions/..",
        "versions/.tmp",
        "/etc/versions/x",
        "versions/a/b",
        "../versions/a",
        "v" * 2000,
    ],
)
def test_pointer_must_name_one_version(tmp_path: Path, pointer: str) -> None:
    (tmp_path / POINTER_FILE).write_text(pointer + "\n")
    with pytest.raises(ArtifactError, match="must name one directory"):
        read_pointer(tmp_path)


@pytest.mark.slow
def test_pointer_is_never_half_written(two: tuple[Path, Path], tmp_path: Path) -> None:
    """A reader loading the current version while versions switch always gets a whole one."""
    a, b = two
    versions = {publish(b, tmp_path).model_version, publish(a, tmp_path).model_version}
    done = threading.Event()

    def switch() -> None:
        for i in range(200):
            activate(tmp_path, sorted(versions)[i % 2])
        done.set()

    switcher = threading.Thread(target=switch)
    switcher.start()
    seen = set()
    while not done.is_set():
        seen.add(load_artifact(current_dir(tmp_path)).model_version)
    switcher.join()
    assert seen <= versions and len(seen) >= 1


def test_cli(two: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a, b = two
    root = str(tmp_path / "root")
    assert main(["model", "publish", "--from", str(a), "--to", root]) == 0
    assert main(["model", "publish", "--from", str(b), "--to", root, "--no-switch"]) == 0
    version_a, version_b = load_artifact(a).model_version, load_artifact(b).model_version
    out = capsys.readouterr().out
    assert f"{version_a} published and current in {root}" in out
    assert f"{version_b} published in {root}" in out
    assert main(["model", "activate", "--root", root, version_b]) == 0
    assert main(["model", "list", root]) == 0
    listed = capsys.readouterr().out.splitlines()[-2:]
    assert sorted(listed, key=lambda line: line[2:]) == sorted(
        [f"* {version_b}", f"  {version_a}"], key=lambda line: line[2:]
    )
    assert main(["model", "activate", "--root", root, "nope"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("beatwatch model: error: no version nope")
