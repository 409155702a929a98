"""The shipped model artifacts: installed as the package data ``beatwatch.models``.

Each directory is one artifact (``artifact.json`` + ``model.keras``); see its
README.md for how it was trained. ``beatwatch.artifact.SHIPPED_MODEL_DIR`` is the
default ``--model``.
"""
