"""``python -m detector``: the same as ``beatwatch detect``."""

from beatwatch.cli import run_module

run_module("detect")
