"""``python -m producer``: the same as ``beatwatch produce``."""

from beatwatch.cli import run_module

run_module("produce")
