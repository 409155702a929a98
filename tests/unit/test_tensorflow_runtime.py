"""The TensorFlow banner filter (pure) and quiet, fast-failing commands (child processes).

The child-process tests pin issue 16's promise on every CPU: on an x86-64 CPU
TensorFlow 2.21 prints absl's preamble and a oneDNN INFO line on import,
whatever ``TF_CPP_MIN_LOG_LEVEL`` says, so a command that loads a model must
route the import through :func:`beatwatch.tensorflow_runtime.import_tensorflow`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from beatwatch import tensorflow_runtime
from beatwatch.artifact import SHIPPED_MODEL_DIR
from beatwatch.tensorflow_runtime import is_banner_line, keras_extras_hidden, without_banner

BANNER = (
    b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
    b"I0000 00:00:1796659571.559053   14773 port.cc:153] oneDNN custom operations are on. "
    b"You may see slightly different numerical results.\n"
)
ERROR_LINE = b"E0000 00:00:1796659571.559053   14773 graph.cc:10] something real broke\n"


def test_banner_lines_are_recognised() -> None:
    for line in BANNER.splitlines():
        assert is_banner_line(line)
    assert not is_banner_line(ERROR_LINE)
    assert not is_banner_line(b"beatwatch detect: error: no artifact directory at /x")


def test_without_banner_keeps_everything_else_in_order() -> None:
    captured = b"first\n" + BANNER + ERROR_LINE + b"W0000 warning kept\nlast"
    assert without_banner(captured) == b"first\n" + ERROR_LINE + b"W0000 warning kept\nlast"


def _run(code: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TF_", "BEATWATCH_"))}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )


@pytest.mark.subprocess
def test_loading_and_scoring_a_model_writes_nothing_to_stderr() -> None:
    result = _run(
        f"""
        import numpy as np
        from beatwatch.artifact import load_artifact
        artifact = load_artifact({str(SHIPPED_MODEL_DIR)!r})
        scores, _ = artifact.scorer().score(np.zeros((4, artifact.input_length), np.float32))
        print(len(scores))
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "4"
    assert result.stderr == ""


@pytest.mark.subprocess
def test_a_missing_model_is_one_line_before_tensorflow_loads() -> None:
    result = _run(
        """
        import sys
        from beatwatch.cli import main
        code = main(["detect", "--model", "/nonexistent", "--metrics-port", "-1"])
        print(code, "tensorflow" in sys.modules, "pandas" in sys.modules)
        """
    )
    # Neither TensorFlow nor pandas (most of a second each) before the refusal.
    assert result.stdout.split() == ["2", "False", "False"]
    assert result.stderr.splitlines() == [
        "beatwatch detect: error: no artifact directory at /nonexistent"
    ]


def test_keras_extras_are_hidden_only_inside_the_block(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "colorsys", raising=False)
    monkeypatch.setattr(tensorflow_runtime, "KERAS_EXTRAS", ("colorsys", "json"))
    with keras_extras_hidden():
        with pytest.raises(ImportError):
            import colorsys
        import json as already_imported  # imported before the block: untouched

        assert already_imported.dumps(1) == "1"
    import colorsys

    assert colorsys.rgb_to_hsv(0, 0, 0) == (0, 0, 0.0)


@pytest.mark.subprocess
def test_keras_loads_without_its_training_extras_which_still_import_afterwards() -> None:
    # scikit-learn is not a dependency (absent from the lock): it is checked
    # only where it happens to be installed.
    result = _run(
        """
        import importlib, importlib.util, sys
        from beatwatch.tensorflow_runtime import import_seconds, import_tensorflow
        import_tensorflow()
        print(*(name in sys.modules for name in ("sklearn", "matplotlib", "pandas")))
        print(import_seconds() > 0)
        import keras
        installed = [n for n in ("matplotlib", "pandas", "sklearn") if importlib.util.find_spec(n)]
        print(keras.layers.Dense(2).units, *(importlib.import_module(n).__name__ for n in installed))
        """
    )
    assert result.returncode == 0, result.stderr
    words = result.stdout.split()
    assert words[:6] == ["False", "False", "False", "True", "2", "matplotlib"]
    assert words[6] == "pandas"
