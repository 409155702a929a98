"""The detector runs TensorFlow on the threads it is configured for."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from detector.cli import add_arguments, settings_from_args

CHECK = """
import logging, sys
import tensorflow as tf
from beatwatch.scoring import set_scoring_threads
logging.basicConfig(level=logging.WARNING, stream=sys.stdout)
set_scoring_threads(1)
tf.constant([1.0]) + 1.0  # the runtime starts: its pools are fixed from here
set_scoring_threads(2)    # too late: logged, not raised
print("threads", tf.config.threading.get_intra_op_parallelism_threads(),
      tf.config.threading.get_inter_op_parallelism_threads())
"""


@pytest.mark.subprocess
def test_threads_are_set_before_tensorflow_runs_and_kept_after() -> None:
    result = subprocess.run(
        [sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=120, check=True
    )
    assert "threads 1 1" in result.stdout
    assert "scoring threads stay at its setting" in result.stdout


def test_detector_scores_on_one_thread_unless_told_otherwise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("BEATWATCH_SCORING_THREADS", raising=False)
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert settings_from_args(parser.parse_args([])).scoring_threads == 1
    assert settings_from_args(parser.parse_args(["--scoring-threads", "0"])).scoring_threads == 0
    monkeypatch.setenv("BEATWATCH_SCORING_THREADS", "3")
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert settings_from_args(parser.parse_args([])).scoring_threads == 3
