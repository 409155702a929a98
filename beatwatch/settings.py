"""Env-aware command-line options: flags beat ``BEATWATCH_*`` variables beat defaults.

Every option is declared once with :func:`add_option`, which reads its
environment variable, validates it with the option's type (a bad value is a
:class:`~beatwatch.errors.ConfigError` naming the variable) and shows the
variable and default in ``--help``. A setting that a settings dataclass holds
takes its default from the dataclass field (:func:`field_defaults`), so each
default is written once. The variable is kept on the parsed action
(:data:`ENV_ATTR`) so that tests can walk every command's options.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Callable, Sequence
from typing import Any

from beatwatch.errors import ConfigError

ENV_PREFIX = "BEATWATCH_"
# Attributes set on each option's argparse action: its variable, and older
# names still read when it is unset (see docs/commands.md).
ENV_ATTR = "beatwatch_env"
LEGACY_ENV_ATTR = "beatwatch_legacy_env"


def env_name(flag: str) -> str:
    """Return the environment variable of a long flag: ``--rate-hz`` -> ``BEATWATCH_RATE_HZ``."""
    return ENV_PREFIX + flag.lstrip("-").replace("-", "_").upper()


def field_defaults(settings: type) -> dict[str, Any]:
    """Return the declared defaults of a settings dataclass, by field name.

    Fields without a plain default (required, or built by a factory) are left out.
    """
    return {
        field.name: field.default
        for field in dataclasses.fields(settings)
        if field.default is not dataclasses.MISSING
    }


def _read_env(variable: str, legacy_env: Sequence[str]) -> tuple[str, str | None]:
    """Return the variable that is set (``variable`` first, then the legacy names) and its value."""
    for name in (variable, *legacy_env):
        raw = os.environ.get(name)
        if raw is not None and raw != "":
            return name, raw
    return variable, None


def add_option(
    parser: argparse.ArgumentParser | Any,
    flag: str,
    *,
    default: Any,
    help: str,
    type: Callable[[str], Any] = str,
    env: str | None = None,
    legacy_env: Sequence[str] = (),
    **kwargs: Any,
) -> argparse.Action:
    """Add ``flag`` whose default may come from its ``BEATWATCH_*`` variable.

    Args:
        parser: the parser or argument group.
        flag: the long flag, e.g. ``--bootstrap-servers``.
        default: used when neither flag nor variable is given.
        help: one sentence; the variable and default are appended.
        type: converts and validates a string value (flag or variable).
        env: the variable name; derived from the flag when omitted.
        legacy_env: older variable names, read only when ``env`` is unset.
        **kwargs: passed to ``add_argument`` (``choices``, ``metavar``...).

    Returns:
        The argparse action, carrying its variable names (:data:`ENV_ATTR`).

    Raises:
        ConfigError: the environment variable holds a value ``type`` rejects.
    """
    variable = env or env_name(flag)
    source, raw = _read_env(variable, legacy_env)
    if raw is not None:
        try:
            default = type(raw)
        except (ValueError, argparse.ArgumentTypeError) as exc:
            raise ConfigError(f"{source}={raw!r}: {exc}") from None
        choices = kwargs.get("choices")
        if choices is not None and default not in choices:
            raise ConfigError(f"{source}={raw!r}: choose from {', '.join(map(str, choices))}")
    shown = "" if default is None else f", default {default}"
    action: argparse.Action = parser.add_argument(
        flag, default=default, type=type, help=f"{help} [{variable}{shown}]", **kwargs
    )
    setattr(action, ENV_ATTR, variable)
    setattr(action, LEGACY_ENV_ATTR, tuple(legacy_env))
    return action


def add_flag(
    parser: argparse.ArgumentParser | Any,
    flag: str,
    *,
    help: str,
    env: str | None = None,
    legacy_env: Sequence[str] = (),
) -> argparse.Action:
    """Add a boolean switch whose variable accepts 1/0, true/false, yes/no.

    Args:
        parser: the parser or argument group.
        flag: the long flag, e.g. ``--loop``.
        help: one sentence; the variable is appended.
        env: the variable name; derived from the flag when omitted.
        legacy_env: older variable names, read only when ``env`` is unset.

    Returns:
        The argparse action, carrying its variable names (:data:`ENV_ATTR`).

    Raises:
        ConfigError: the environment variable holds something else.
    """
    variable = env or env_name(flag)
    source, raw = _read_env(variable, legacy_env)
    try:
        default = parse_bool(raw) if raw else False
    except ValueError as exc:
        raise ConfigError(f"{source}={raw!r}: {exc} (use 1/0, true/false, yes/no)") from None
    action: argparse.Action = parser.add_argument(
        flag, action="store_true", default=default, help=f"{help} [{variable}]"
    )
    setattr(action, ENV_ATTR, variable)
    setattr(action, LEGACY_ENV_ATTR, tuple(legacy_env))
    return action


def parse_bool(text: str) -> bool:
    """Parse a boolean environment value.

    Raises:
        ValueError: not one of 1/0, true/false, yes/no, on/off.
    """
    lowered = text.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ValueError(f"not a boolean: {text!r}")


# The Kafka protocol carries counts and milliseconds as signed 32-bit integers.
INT32_MAX = 2**31 - 1


def int_between(low: int, high: int) -> Callable[[str], int]:
    """Return an argparse type accepting integers in ``[low, high]``.

    Upper bounds keep a typo such as ``--partitions 3000000000`` from
    reaching the Kafka client (which fails with a ``struct.error``) or memory.
    """

    def parse(text: str) -> int:
        value = int(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be in [{low}, {high}], got {value}")
        return value

    parse.__name__ = f"integer in [{low}, {high}]"  # argparse names the type in its errors
    return parse


def positive_int(text: str) -> int:
    """Parse an integer >= 1 (argparse type)."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    """Parse an integer >= 0 (argparse type)."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def positive_float(text: str) -> float:
    """Parse a finite float > 0 (argparse type)."""
    value = float(text)
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def non_negative_float(text: str) -> float:
    """Parse a finite float >= 0 (argparse type)."""
    value = float(text)
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def metrics_port(text: str) -> int:
    """Parse a metrics port: 1-65535, 0 for any free port, -1 for none (argparse type)."""
    return int_between(-1, 65535)(text)
