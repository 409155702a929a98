"""Checks of single beat fields and headers, shared by the JSON and binary codecs."""

from __future__ import annotations

from collections.abc import Sequence

from beatwatch.errors import InvalidBeat
from beatwatch.wire.beat import BEAT_CLASSES, MAX_INT64, MAX_RR_MS, MAX_STREAM_ID_CHARS


def header_value(headers: Sequence[tuple[str, bytes]], name: str) -> str | None:
    """The ASCII value of header ``name`` (case-insensitive), None when absent."""
    for key, raw in headers or ():
        if key.lower() == name:
            try:
                return raw.decode("ascii") if raw is not None else ""
            except UnicodeDecodeError:
                raise InvalidBeat("decode", f"header {name} is not ASCII") from None
    return None


def int_field(body: dict[str, object], name: str) -> int:
    """A JSON field that must be an integer in 0..2**63-1 (``seq``, ``ts_ms``)."""
    raw = body.get(name)
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise InvalidBeat("schema", f"'{name}' must be an integer")
    if raw < 0:
        raise InvalidBeat("schema", f"'{name}' must be >= 0")
    if raw > MAX_INT64:
        # Alerts carry seq and ts_ms as JSON integers, which subscribers read as 64-bit.
        raise InvalidBeat("schema", f"'{name}' must be < 2**63")
    return raw


def check_label(raw: object) -> int | None:
    """An optional label: 0 or 1."""
    if raw is None:
        return None
    if raw in (0, 1) and not isinstance(raw, bool):
        return int(raw)  # type: ignore[call-overload]
    raise InvalidBeat("schema", "'label' must be 0 or 1")


def check_rr_ms(raw: object, name: str) -> float | None:
    """An optional RR interval: a finite number of milliseconds in [0, MAX_RR_MS]."""
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, (int, float)):
        raise InvalidBeat("schema", f"'{name}' must be a number")
    value = float(raw)
    if not 0.0 <= value <= MAX_RR_MS:  # also refuses NaN
        raise InvalidBeat("schema", f"'{name}' must be in 0..{MAX_RR_MS:.0f} ms")
    return value


def check_beat_class(raw: object) -> str | None:
    """An optional AAMI beat class: one of ``BEAT_CLASSES``."""
    if raw is None:
        return None
    if isinstance(raw, str) and raw in BEAT_CLASSES:
        return raw
    raise InvalidBeat("schema", f"'beat_class' must be one of {', '.join(BEAT_CLASSES)}")


def json_extras(body: dict[str, object]) -> tuple[float | None, float | None, str | None]:
    """The optional recording fields of a JSON beat, validated."""
    return (
        check_rr_ms(body.get("rr_prev_ms"), "rr_prev_ms"),
        check_rr_ms(body.get("rr_local_ms"), "rr_local_ms"),
        check_beat_class(body.get("beat_class")),
    )


def check_stream_id(text: str) -> str:
    """A stream id of 1 to ``MAX_STREAM_ID_CHARS`` characters."""
    if not text or len(text) > MAX_STREAM_ID_CHARS:
        raise InvalidBeat("schema", f"stream id must be 1-{MAX_STREAM_ID_CHARS} characters")
    return text


Extras = tuple[float | None, float | None, str | None]
NO_EXTRAS: Extras = (None, None, None)
