"""The per-stream incident state machine: beats in, ``open`` / ``update`` / ``close`` out.

Pure and deterministic: the machine's state is the ``"incident"`` part of the
stream's record in :class:`beatwatch.state.StateStore` (a JSON-able dict), and
every decision uses the beats' own ``seq`` and ``ts_ms`` (signal time), so a
batch read again after a crash yields the same events with the same content.
Only :func:`close_silent` looks at a clock, the detector's.

Rules (each configurable in :class:`IncidentRules`, defaults measured on
MIT-BIH records, see ``docs/incidents.md``):

- ``fast_run``: at least ``critical_run_beats`` consecutive abnormal beats at
  ``critical_rate_bpm`` or faster (the RR intervals of the beats in the run;
  without RR intervals the run length alone). Severity ``critical``, like a
  bedside monitor's ventricular tachycardia alarm.
- ``run``: at least ``run_beats`` consecutive abnormal beats (at
  ``run_rate_bpm`` or faster when RR intervals are known). Severity ``warning``.
- ``k_of_n``: at least ``min_abnormal`` of the last ``window_beats`` beats
  abnormal. Severity ``warning``.

An open incident takes every following beat; it is reported by an ``update``
at most every ``update_interval_s`` seconds of signal time while something
changed (an escalation to ``critical`` is reported at once), and closes after
a quiet period: ``quiet_beats`` normal beats in a row and ``quiet_s`` seconds
since the last abnormal beat; or when the stream has been silent for
``silence_s`` seconds on the detector's clock. Closing clears the window, so
the next onset is a new incident with a new id.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, NamedTuple

from beatwatch.errors import ConfigError
from beatwatch.incident import IncidentEvent, Kind, Severity, incident_id

PART = "incident"
# Weight of the newest RR interval in the stream's rate estimate.
RR_SMOOTHING = 0.25


@dataclass(frozen=True)
class IncidentRules:
    """When an incident opens, reports and closes (see the module docstring)."""

    window_beats: int = 8
    min_abnormal: int = 5
    run_beats: int = 3
    run_rate_bpm: float = 90.0
    critical_run_beats: int = 5
    critical_rate_bpm: float = 100.0
    quiet_beats: int = 10
    quiet_s: float = 30.0
    update_interval_s: float = 120.0
    silence_s: float = 60.0

    def __post_init__(self) -> None:
        positive = {
            "--incident-window-beats": self.window_beats,
            "--incident-min-abnormal": self.min_abnormal,
            "--incident-run-beats": self.run_beats,
            "--incident-critical-run-beats": self.critical_run_beats,
            "--incident-quiet-beats": self.quiet_beats,
        }
        for flag, value in positive.items():
            if value < 1:
                raise ConfigError(f"{flag} {value}: must be at least 1")
        if self.min_abnormal > self.window_beats:
            raise ConfigError(
                f"--incident-min-abnormal {self.min_abnormal} is over "
                f"--incident-window-beats {self.window_beats}"
            )
        if max(self.run_beats, self.critical_run_beats) > self.window_beats:
            # The onset (the incident's first beat) is looked up in the window.
            raise ConfigError(
                "--incident-run-beats and --incident-critical-run-beats must not exceed "
                f"--incident-window-beats {self.window_beats}"
            )
        numbers = {
            "--incident-run-rate-bpm": self.run_rate_bpm,
            "--incident-critical-rate-bpm": self.critical_rate_bpm,
            "--incident-quiet-s": self.quiet_s,
            "--incident-update-interval-s": self.update_interval_s,
        }
        for flag, number in numbers.items():
            if not (math.isfinite(number) and number >= 0):
                raise ConfigError(f"{flag} {number}: must be a finite number >= 0")
        if not (math.isfinite(self.silence_s) and self.silence_s > 0):
            raise ConfigError(f"--incident-silence-s {self.silence_s}: must be > 0")

    def to_dict(self) -> dict[str, Any]:
        """The rules as JSON (for reports)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> IncidentRules:
        """Rules from :meth:`to_dict` output; unknown keys are refused."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown incident rule settings: {', '.join(unknown)}")
        return cls(**values)


class BeatVerdict(NamedTuple):
    """What the machine needs of one scored beat (a tuple: built for every beat).

    Attributes:
        seq: the beat's per-stream number.
        ts_ms: the beat's time, epoch ms (signal time).
        score: the beat's score.
        ratio: score / threshold (> 1 when abnormal); None when the threshold is 0.
        abnormal: whether the beat alerted.
        rr_prev_ms: the RR interval before the beat, when the beat carries it.
        region: where the reconstruction failed most (an abnormal beat's top region).
    """

    seq: int
    ts_ms: int
    score: float
    ratio: float | None
    abnormal: bool
    rr_prev_ms: float | None = None
    region: str | None = None


def new_state() -> dict[str, Any]:
    """The machine state of a stream never seen."""
    return {
        "idx": 0,
        "abn": [],
        "run": 0,
        "run_rr": [0.0, 0],
        "normal_run": 0,
        "last_abn_ts": None,
        "rr_ema": None,
        "open": None,
    }


def _rate_bpm(rr_sum_ms: float, rr_count: int) -> float | None:
    if rr_count == 0 or rr_sum_ms <= 0:
        return None
    return 60_000.0 * rr_count / rr_sum_ms


def _fast_enough(rate_bpm: float | None, minimum_bpm: float) -> bool:
    # Without RR intervals the run length alone decides.
    return rate_bpm is None or rate_bpm >= minimum_bpm


def _longest_run(indices: list[int]) -> int:
    longest = run = 0
    previous = None
    for idx in indices:
        run = run + 1 if previous is not None and idx == previous + 1 else 1
        longest = max(longest, run)
        previous = idx
    return longest


def step(
    state: dict[str, Any],
    beat: BeatVerdict,
    *,
    stream: str,
    model_version: str,
    rules: IncidentRules,
) -> list[IncidentEvent]:
    """Advance a stream's machine by one new beat; return the events it causes.

    ``state`` (from :func:`new_state`) is changed in place. The caller applies
    each beat once (the seq guard of :class:`beatwatch.state.StateStore`).
    """
    state["idx"] += 1
    idx = state["idx"]
    if beat.rr_prev_ms is not None and beat.rr_prev_ms > 0:
        ema = state["rr_ema"]
        state["rr_ema"] = (
            beat.rr_prev_ms if ema is None else ema + RR_SMOOTHING * (beat.rr_prev_ms - ema)
        )
    abnormal: list[list[Any]] = state["abn"]
    if beat.abnormal:
        abnormal.append([idx, beat.seq, beat.ts_ms, beat.score, beat.ratio, beat.region])
        state["run"] += 1
        state["normal_run"] = 0
        state["last_abn_ts"] = beat.ts_ms
        if beat.rr_prev_ms is not None and beat.rr_prev_ms > 0:
            state["run_rr"] = [state["run_rr"][0] + beat.rr_prev_ms, state["run_rr"][1] + 1]
    else:
        state["run"] = 0
        state["run_rr"] = [0.0, 0]
        state["normal_run"] += 1
    while abnormal and abnormal[0][0] <= idx - rules.window_beats:
        abnormal.pop(0)
    run_rate = _rate_bpm(*state["run_rr"])

    incident = state["open"]
    if incident is None:
        fired = _fired_rule(state, run_rate, rules)
        if fired is None:
            return []
        rule, severity, detail = fired
        first = abnormal[0]
        best = max(abnormal, key=lambda a: a[3])
        state["open"] = incident = {
            "id": incident_id(stream, int(first[1]), model_version),
            "model_version": model_version,
            "rule": rule,
            "rule_detail": detail,
            "severity": severity,
            "first_seq": first[1],
            "first_ts_ms": first[2],
            "first_idx": first[0],
            "last_seq": beat.seq,
            "last_ts_ms": beat.ts_ms,
            "abnormal": len(abnormal),
            "longest_run": _longest_run([a[0] for a in abnormal]),
            "max_score": best[3],
            "max_ratio": best[4],
            "worst_region": best[5],
            "event_seq": 0,
            "event_ts_ms": beat.ts_ms,
            "changed": False,
        }
        return [_event(incident, "open", stream, idx, state, beat.ts_ms)]

    incident["last_seq"], incident["last_ts_ms"] = beat.seq, beat.ts_ms
    incident["changed"] = True
    escalated = False
    if beat.abnormal:
        incident["abnormal"] += 1
        incident["longest_run"] = max(incident["longest_run"], state["run"])
        if beat.score > incident["max_score"]:
            incident["max_score"], incident["max_ratio"] = beat.score, beat.ratio
            incident["worst_region"] = beat.region
        if (
            incident["severity"] != "critical"
            and state["run"] >= rules.critical_run_beats
            and _fast_enough(run_rate, rules.critical_rate_bpm)
        ):
            incident["severity"] = "critical"
            escalated = True
    quiet = (
        state["normal_run"] >= rules.quiet_beats
        and beat.ts_ms - state["last_abn_ts"] >= rules.quiet_s * 1000
    )
    if quiet:
        return [_close(state, stream, "quiet", beat.ts_ms)]
    if escalated or beat.ts_ms - incident["event_ts_ms"] >= rules.update_interval_s * 1000:
        return [_event(incident, "update", stream, idx, state, beat.ts_ms)]
    return []


def _fired_rule(
    state: dict[str, Any], run_rate: float | None, rules: IncidentRules
) -> tuple[str, Severity, str] | None:
    run = state["run"]
    rate = "" if run_rate is None else f" at {run_rate:.0f}/min"
    if run >= rules.critical_run_beats and _fast_enough(run_rate, rules.critical_rate_bpm):
        return "fast_run", "critical", f"{run} consecutive abnormal beats{rate}"
    if run >= rules.run_beats and _fast_enough(run_rate, rules.run_rate_bpm):
        return "run", "warning", f"{run} consecutive abnormal beats{rate}"
    count = len(state["abn"])
    if count >= rules.min_abnormal:
        return "k_of_n", "warning", f"{count} of the last {rules.window_beats} beats abnormal"
    return None


def _event(
    incident: dict[str, Any],
    kind: Kind,
    stream: str,
    idx: int,
    state: dict[str, Any],
    event_ts_ms: int,
    close_reason: str | None = None,
) -> IncidentEvent:
    if kind != "open":
        incident["event_seq"] += 1
    incident["event_ts_ms"] = event_ts_ms
    incident["changed"] = False
    rr_ema = state["rr_ema"]
    return {
        "incident_id": incident["id"],
        "kind": kind,
        "event_seq": incident["event_seq"],
        "stream": stream,
        "severity": incident["severity"],
        "rule": incident["rule"],
        "rule_detail": incident["rule_detail"],
        "model_version": incident["model_version"],
        "first_seq": incident["first_seq"],
        "first_ts_ms": incident["first_ts_ms"],
        "last_seq": incident["last_seq"],
        "last_ts_ms": incident["last_ts_ms"],
        "event_ts_ms": event_ts_ms,
        "beats": idx - incident["first_idx"] + 1,
        "abnormal_beats": incident["abnormal"],
        "longest_run": incident["longest_run"],
        "max_score": incident["max_score"],
        "max_score_ratio": incident["max_ratio"],
        "worst_region": incident["worst_region"],
        "rate_bpm": None if rr_ema is None else round(60_000.0 / rr_ema, 1),
        "close_reason": close_reason,
    }


def _close(state: dict[str, Any], stream: str, reason: str, event_ts_ms: int) -> IncidentEvent:
    incident = state["open"]
    event = _event(incident, "close", stream, state["idx"], state, event_ts_ms, reason)
    # A new onset needs new abnormal beats: nothing of this incident opens the next.
    state["open"] = None
    state["abn"] = []
    state["run"] = 0
    state["run_rr"] = [0.0, 0]
    return event


def is_open(state: dict[str, Any] | None) -> bool:
    """Whether the machine state has an open incident."""
    return state is not None and state.get("open") is not None


def close_silent(state: dict[str, Any], stream: str) -> IncidentEvent | None:
    """Close the stream's open incident because the stream went silent; None when none is open.

    The caller decides silence on its own clock (no beat for ``silence_s``
    while the stream's partition is caught up). The event's times are the
    last beat's, so a repeat has the same content.
    """
    if not is_open(state):
        return None
    return _close(state, stream, "silence", state["open"]["last_ts_ms"])
