"""Checks of parsed JSON fields shared by the sections of ``artifact.json``.

Each check raises :class:`~beatwatch.errors.ArtifactError` with one line,
``<file>: <field> <what is wrong>``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, NoReturn

from beatwatch.errors import ArtifactError


def fail(where: str, message: str) -> NoReturn:
    """Raise the one-line :class:`ArtifactError` ``<where>: <message>``."""
    raise ArtifactError(f"{where}: {message}")


def is_number(value: Any) -> bool:
    """Whether ``value`` is a JSON number (``bool`` is an ``int`` in Python, but not one)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def is_finite(value: int | float) -> bool:
    """Whether a JSON number is finite (an integer too large for a float is not)."""
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer literal too large for a float
        return False


def is_count(value: Any) -> bool:
    """Whether ``value`` is a non-negative integer (not a ``bool``)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def json_object(value: Any, where: str, name: str) -> Mapping[str, Any]:
    """``value`` when it is a JSON object; anything else is refused as ``name``."""
    if not isinstance(value, dict):
        fail(where, f"{name} must be an object")
    return value


def refuse_unknown(data: Mapping[str, Any], known: Sequence[str], where: str, name: str) -> None:
    """Refuse keys of ``data`` outside ``known``: a typo must not pass as an absent field."""
    unknown = sorted(set(data) - set(known))
    if unknown:
        fail(where, f"{name} has unknown keys {', '.join(unknown)}")


def optional_string(data: Mapping[str, Any], key: str, where: str, name: str) -> str | None:
    """``data[key]`` when it is a string, None when absent; anything else is refused."""
    if key not in data:
        return None
    value = data[key]
    if not isinstance(value, str):
        fail(where, f"{name}{key} must be a string")
    return value


def put(out: dict[str, Any], key: str, value: Any) -> None:
    """Set ``out[key]`` unless ``value`` is None (an absent optional field)."""
    if value is not None:
        out[key] = value


def metric_out(value: float | None) -> float | None:
    """A metric as written: NaN (undefined) is ``null``."""
    return None if value is None or math.isnan(value) else value


def metric_in(value: Any, where: str, name: str) -> float:
    """A metric as read: ``null`` (undefined) is NaN."""
    if value is None:
        return math.nan
    if not is_number(value):
        fail(where, f"evaluation.{name} must be a number or null")
    number: float = value
    return number
