"""Exceptions that carry one clear, user-facing line.

Errors are raised where validity ends and caught in two places: per record in
the detector loop (dead-letter, count, continue) and at the top of each command
(print one line, exit non-zero).
"""


class BeatwatchError(Exception):
    """Base class: its message is shown to the user as is, on one line."""


class ConfigError(BeatwatchError):
    """A flag, environment variable or file setting is invalid."""


class DataError(BeatwatchError):
    """An input data file is missing or malformed (names file, row, problem)."""


class ArtifactError(BeatwatchError):
    """A model artifact is missing, corrupt, or of an unknown format."""


class InvalidBeat(BeatwatchError):  # noqa: N818 - reads as a verdict on a record
    """A message from the beats topic cannot be scored.

    Attributes:
        reason: short machine-readable reason, used as a metric label and a
            dead-letter header (``decode``, ``schema``, ``length``,
            ``non-finite``, ``too-large``, ``empty``, ``content-type``,
            ``missing-key``).
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
