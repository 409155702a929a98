"""The live incident replay's mapping of producer beats onto annotated beats, and its tally."""

from __future__ import annotations

import numpy as np
import pytest

from beatwatch.incident import IncidentEvent
from beatwatch.tools.incident_eval import AnnotatedBeats, Tally
from tests.incident_replay import StepError, to_annotated

START_MS = 1_765_100_000_000


def annotated(classes: str, step_ms: int = 1000) -> AnnotatedBeats:
    """One annotated beat a second, classes as letters."""
    ts = np.arange(len(classes), dtype=np.int64) * step_ms
    return AnnotatedBeats("r", list(classes), ts, np.full(len(classes), float(step_ms)), 1.0)


def event(
    kind: str, first_seq: int, last_seq: int, beat_ms: np.ndarray, at_seq: int
) -> IncidentEvent:
    """An event of the incident ``r/first_seq`` as the detector publishes it (replay times)."""
    return IncidentEvent(
        incident_id=f"incident/r/{first_seq}/m",
        kind=kind,  # type: ignore[typeddict-item]
        event_seq=0 if kind == "open" else 1,
        stream="r",
        severity="warning",
        rule="run",
        rule_detail="",
        model_version="m",
        first_seq=first_seq,
        first_ts_ms=START_MS + int(beat_ms[first_seq]),
        last_seq=last_seq,
        last_ts_ms=START_MS + int(beat_ms[last_seq]),
        event_ts_ms=START_MS + int(beat_ms[at_seq]),
        beats=last_seq - first_seq + 1,
        abnormal_beats=3,
        longest_run=3,
        max_score=1.0,
        max_score_ratio=None,
        worst_region=None,
        rate_bpm=None,
        close_reason="quiet" if kind == "close" else None,
    )


# The producer's beats: the annotated ones 20 ms late, plus a false beat at 4.5 s.
BEAT_MS = np.asarray([20, 1020, 2020, 3020, 4020, 4500, 5020, 6020, 7020, 8020, 9020])


def test_spans_map_to_annotated_beats_and_times_lose_the_replay_start() -> None:
    beats = annotated("NNNNNVVVNN")
    events = [event("open", 5, 8, BEAT_MS, 8), event("close", 5, 8, BEAT_MS, 8)]
    mapped = to_annotated(events, BEAT_MS, beats)
    # producer beat 5 is the false one (4.5 s): the span starts at the annotated beat after it
    assert [(e["first_seq"], e["last_seq"]) for e in mapped] == [(5, 7), (5, 7)]
    assert mapped[0]["event_ts_ms"] == 7020
    assert events[0]["first_seq"] == 5  # the input is left alone


def test_the_tally_counts_a_run_inside_a_live_incident_and_its_delay() -> None:
    beats = annotated("NNNNNVVVNN")
    events = to_annotated(
        [event("open", 6, 8, BEAT_MS, 8), event("close", 6, 10, BEAT_MS, 10)], BEAT_MS, beats
    )
    tally = Tally()
    tally.add(beats, 40, events)
    figures = tally.figures()
    assert (tally.alerts, tally.events, tally.runs, tally.covered) == (40, 2, 1, 1)
    # run's first beat at 5.0 s, the open on producer beat 8 (annotated 7 at 7.02 s)
    assert figures["delay_median_s"] == pytest.approx(2.02)


def test_an_incident_away_from_the_run_does_not_cover_it() -> None:
    beats = annotated("NNNNNVVVNN")
    events = to_annotated(
        [event("open", 0, 2, BEAT_MS, 2), event("close", 0, 3, BEAT_MS, 3)], BEAT_MS, beats
    )
    tally = Tally()
    tally.add(beats, np.zeros(10, dtype=bool), events)
    assert (tally.runs, tally.covered) == (1, 0)


def test_beats_cut_differently_from_the_producers_are_refused() -> None:
    beats = annotated("NNNNNVVVNN")
    published = event("open", 5, 8, BEAT_MS, 8)
    other = BEAT_MS.copy()
    other[8] += 4  # the recomputed beat 8 is not where the producer put it
    with pytest.raises(StepError, match="other beats"):
        to_annotated([published], other, beats)
