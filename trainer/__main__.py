"""``python -m trainer``: the same as ``beatwatch train``."""

from beatwatch.cli import run_module

run_module("train")
