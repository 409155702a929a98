"""The trainer: load beats, fit an autoencoder, calibrate a threshold, evaluate, write an artifact.

Modules, one job each: :mod:`trainer.presets` (recipes and the Keras model),
:mod:`trainer.fit` (deterministic fitting with progress), :mod:`trainer.calibrate`
(threshold rules), :mod:`trainer.metrics` (evaluation), :mod:`trainer.pipeline`
(one run end to end), :mod:`trainer.report` (metrics.json, summary.md, plots),
:mod:`trainer.compare` (the multi-seed table), :mod:`trainer.cli` and
:mod:`trainer.evaluate_cli` (the commands).
"""

from __future__ import annotations

import argparse
import threading


def run(settings: argparse.Namespace, stop: threading.Event | None = None) -> int:
    """Run ``beatwatch train`` with parsed ``settings``; ``stop`` set before start skips it."""
    if stop is not None and stop.is_set():
        return 0
    from trainer.cli import main

    return main(settings)
