"""The detector's model watcher: loads new versions off the hot path, refuses bad ones."""

from __future__ import annotations

import json
import shutil
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from beatwatch.artifact import SHIPPED_MODEL_DIR, content_sha256, load_artifact
from beatwatch.data import sha256_bytes
from beatwatch.errors import ArtifactError
from beatwatch.model_store import POINTER_FILE, publish
from detector.model_watch import (
    LoadedModel,
    ModelWatcher,
    check_model_path,
    load_version,
    open_model,
    warm_up,
)
from tests.unit.test_model_store import variant

pytestmark = [pytest.mark.tensorflow, pytest.mark.slow]

MAX_BYTES = 64 * 1024


def seal(target: Path) -> None:
    """Recompute model_sha256, content_sha256 and model_version after editing ``target``."""
    config = json.loads((target / "artifact.json").read_text())
    config["model_sha256"] = sha256_bytes((target / "model.keras").read_bytes())
    config["content_sha256"] = content_sha256(target / "model.keras", config)
    config["model_version"] = f"{config['name']}-{config['content_sha256'][:12]}"
    (target / "artifact.json").write_text(json.dumps(config))


@pytest.fixture(scope="module")
def versions(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("versions")
    threshold = json.loads((SHIPPED_MODEL_DIR / "artifact.json").read_text())["threshold"]
    made = {
        "a": variant(base / "a"),
        "b": variant(base / "b", threshold={**threshold, "value": 0.5}),
        "c": variant(base / "c", threshold={**threshold, "value": 0.25}),
    }
    # Passes every check without TensorFlow, but Keras cannot build it.
    unloadable = shutil.copytree(made["a"], base / "unloadable")
    with zipfile.ZipFile(made["a"] / "model.keras") as source:
        entries = {name: source.read(name) for name in source.namelist()}
    entries["config.json"] = entries["config.json"].replace(b'"Dense"', b'"NoSuchLayer"')
    with zipfile.ZipFile(unloadable / "model.keras", "w") as out:
        for name, data in entries.items():
            out.writestr(name, data)
    seal(unloadable)
    made["unloadable"] = unloadable
    return made


@pytest.fixture(scope="module")
def running(versions: dict[str, Path]) -> LoadedModel:
    root = versions["a"].parent / "running-root"
    publish(versions["a"], root)
    path, pointer = check_model_path(root)
    return warm_up(load_artifact(path), MAX_BYTES, pointer)


def watcher_for(
    root: Path, running: LoadedModel, refusals: list[str], interval_s: float = 60.0
) -> ModelWatcher:
    return ModelWatcher(root, running, refusals.append, interval_s=interval_s)


def test_model_path_is_a_directory_or_a_root(versions: dict[str, Path], tmp_path: Path) -> None:
    assert check_model_path(versions["a"]) == (versions["a"], None)
    published = publish(versions["b"], tmp_path)
    assert check_model_path(tmp_path) == (published.path, f"versions/{published.model_version}")
    (tmp_path / POINTER_FILE).write_text("../../etc\n")
    with pytest.raises(ArtifactError, match="must name one directory"):
        check_model_path(tmp_path)


def test_open_model_checks_without_loading_and_warm_refuses_with_one_line(
    versions: dict[str, Path], tmp_path: Path
) -> None:
    opened = open_model(versions["a"], MAX_BYTES)
    assert opened.pointer is None and opened.artifact.path == versions["a"]
    publish(versions["b"], tmp_path)
    opened = open_model(tmp_path, MAX_BYTES)
    assert opened.pointer == f"versions/{opened.artifact.model_version}"
    loaded = opened.warm()
    assert loaded.pointer == opened.pointer and loaded.context.threshold == 0.5
    with pytest.raises(ArtifactError) as caught:
        open_model(versions["unloadable"], MAX_BYTES).warm()
    assert "\n" not in str(caught.value) and "cannot load model" in str(caught.value)


def test_new_version_is_loaded_warmed_and_taken_once(
    versions: dict[str, Path], running: LoadedModel, tmp_path: Path
) -> None:
    publish(versions["a"], tmp_path)
    refusals: list[str] = []
    watcher = watcher_for(tmp_path, running, refusals)
    assert watcher.check() is None and watcher.take() is None  # still the running version
    publish(versions["b"], tmp_path)
    loaded = watcher.check()
    assert loaded is not None and loaded.version == load_artifact(versions["b"]).model_version
    assert loaded.context.threshold == 0.5 and loaded.context.max_message_bytes == MAX_BYTES
    scores, _ = loaded.scorer.score(np.zeros((3, 140), np.float32))
    assert scores.shape == (3,)
    assert watcher.check() is None  # the same pointer is not loaded twice
    assert watcher.take() is loaded and watcher.take() is None
    assert refusals == []


def test_bad_versions_are_refused_once_and_the_running_one_stays(
    versions: dict[str, Path], running: LoadedModel, tmp_path: Path
) -> None:
    from beatwatch.artifact import save_artifact
    from beatwatch.scoring import MinMax
    from tests.unit.test_artifact import record, tiny_model

    publish(versions["a"], tmp_path)
    refusals: list[str] = []
    watcher = watcher_for(tmp_path, running, refusals)

    def point_at(directory: Path) -> None:
        # By hand: `beatwatch model publish` itself refuses these.
        shutil.copytree(directory, tmp_path / "versions" / directory.name, dirs_exist_ok=True)
        (tmp_path / POINTER_FILE).write_text(f"versions/{directory.name}\n")

    corrupt = shutil.copytree(versions["c"], tmp_path / "corrupt")
    with (corrupt / "model.keras").open("ab") as handle:
        handle.write(b"\0")  # checksum mismatch
    short = save_artifact(
        tmp_path / "short", tiny_model(), record(MinMax.fit(np.zeros((2, 8)), "global")), "s"
    )
    for directory, reason in [
        (corrupt, "artifact"),
        (short.path, "input_length"),
        (versions["unloadable"], "load"),
    ]:
        point_at(directory)
        assert watcher.check() is None
        assert watcher.check() is None  # refused once, not every interval
        assert refusals[-1] == reason
    (tmp_path / POINTER_FILE).write_text("nonsense\n")
    watcher.check()
    watcher.check()
    assert refusals == ["artifact", "input_length", "load", "pointer"]
    assert watcher.take() is None
    publish(versions["c"], tmp_path)  # a good one after the bad ones is taken
    loaded = watcher.check()
    assert loaded is not None and watcher.take() is loaded and loaded.context.threshold == 0.25


def test_thread_loads_off_the_caller(
    versions: dict[str, Path], running: LoadedModel, tmp_path: Path
) -> None:
    publish(versions["a"], tmp_path)
    calls: list[str] = []

    def slow_loader(root: Path, pointer: str, max_bytes: int, length: int) -> LoadedModel:
        calls.append(pointer)
        time.sleep(0.3)
        return load_version(root, pointer, max_bytes, length)

    watcher = ModelWatcher(tmp_path, running, calls.append, interval_s=0.02, loader=slow_loader)
    watcher.start()
    try:
        publish(versions["b"], tmp_path)
        deadline = time.monotonic() + 60
        taken = None
        while taken is None and time.monotonic() < deadline:
            taken = watcher.take()  # never blocks on the load
            time.sleep(0.01)
        assert taken is not None and taken.context.threshold == 0.5
        assert calls == [f"versions/{taken.version}"]
    finally:
        watcher.stop()


def test_detect_refuses_a_bad_model_root_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from beatwatch.cli import main

    (tmp_path / POINTER_FILE).write_text("nonsense\n")
    assert main(["detect", "--model", str(tmp_path), "--metrics-port", "-1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "CURRENT: must name one directory" in err
