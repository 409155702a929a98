"""The detector's patient-adaptive batch scoring equals the offline StreamScorer, beat for beat.

Pure logic: records built in memory, a fake autoencoder whose rows do not depend
on the batch (as the Keras model's, measured), and a dict standing in for the
state store with its seq guard (the store itself is tested in test_state.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pytest

from beatwatch.clients.client import ConsumedRecord
from beatwatch.patient import KIND_NAMES, PatientRules, StreamBeats, StreamScorer, stream_beats
from beatwatch.wire import Beat, encode
from detector.batch import ModelContext
from detector.patient_scoring import (
    MISSING_RR,
    PART,
    PatientScoring,
    StateAccess,
    score_patient_batch,
)

SCHEMA = json.loads(
    (Path(__file__).parents[2] / "docs" / "schemas" / "alert.schema.json").read_text()
)
L = 40
RULES = PatientRules(
    region_start=10,
    region_end=30,
    input_scale=1.0,
    population_ref=0.05,
    n_leads=1,
    scale_beats=8,
    learn_s=20.0,
    learn_min_beats=10,
    learn_max_beats=64,
    template_alpha=0.01,
    rr_beats=16,
    v_threshold=2.0,
)
TOPIC = "beats"


def half_model(scaled: np.ndarray) -> np.ndarray:
    """A row-wise 'autoencoder': each row's output depends on that row only."""
    return np.tanh(np.asarray(scaled, np.float64)) * 0.5


SCORING = PatientScoring(StreamScorer(RULES, half_model, L), "m-1", needs_rr=True)
CONTEXT = ModelContext(input_length=L, threshold=RULES.v_threshold, model_version="m-1")


class DictState(StateAccess):
    """The state store's behaviour the scorer relies on: records per partition, a seq guard."""

    def __init__(self, partitions: tuple[int, ...] = (0, 1)) -> None:
        self.records: dict[int, dict[str, dict[str, Any]]] = {p: {} for p in partitions}

    def owns(self, partition: int) -> bool:
        return partition in self.records

    def part(self, partition: int, stream: str) -> Any:
        return self.records[partition].get(stream, {}).get(PART)

    def apply(self, outcome: Any) -> None:
        """What the state step does with each scored beat, in record order."""
        beats = outcome.beats
        for row in range(len(beats)):
            records = self.records[beats.partitions[row]]
            record = records.setdefault(beats.streams[row], {"seq": -1})
            if beats.seqs[row] <= record["seq"]:
                continue
            record["seq"] = beats.seqs[row]
            record.update(beats.parts[row])


def beats_of(name: str, n: int, seed: int) -> StreamBeats:
    """A stream of normal beats with a wide (ventricular-like) premature beat every 7th."""
    rng = np.random.default_rng(seed)
    t = np.arange(L) - 20.0
    normal = np.exp(-(t**2) / 4.0) * (1.0 + 0.3 * seed)
    wide = 1.5 * np.exp(-(t**2) / 40.0)
    rows, rr = [], []
    for i in range(n):
        odd = i % 7 == 6
        rows.append((wide if odd else normal) + rng.normal(0, 0.02, L))
        rr.append(500.0 if odd else 800.0 + 20 * rng.standard_normal())
    ts = np.cumsum(rr).astype(np.int64)
    return stream_beats(np.arange(n), ts, np.stack(rows).astype(np.float32), rr)


def record(stream: str, beats: StreamBeats, i: int, partition: int, offset: int) -> ConsumedRecord:
    beat = Beat(
        stream=stream,
        seq=int(beats.seq[i]),
        ts_ms=int(beats.ts_ms[i]),
        samples=beats.samples[i],
        rr_prev_ms=float(beats.rr_prev_ms[i]),
        rr_local_ms=float(beats.rr_prev_ms[i]),
    )
    key, value, headers = encode(beat, "binary" if offset % 2 else "json")
    return ConsumedRecord(TOPIC, partition, offset, key, value, headers)


def interleaved(streams: dict[str, tuple[int, StreamBeats]]) -> list[ConsumedRecord]:
    """All beats of the streams, merged in time order, with per-partition offsets."""
    items = sorted(
        (int(b.ts_ms[i]), name, i) for name, (_, b) in streams.items() for i in range(len(b.seq))
    )
    offsets = {p: 0 for p, _ in streams.values()}
    out = []
    for _, name, i in items:
        partition, beats = streams[name]
        out.append(record(name, beats, i, partition, offsets[partition]))
        offsets[partition] += 1
    return out


Got = dict[tuple[str, int], tuple[float, str, bool]]


def live(records: list[ConsumedRecord], sizes: list[int], state: DictState) -> Got:
    """Score ``records`` in batches of ``sizes`` (cycled); return what each beat got."""
    got: Got = {}
    at, k = 0, 0
    while at < len(records):
        batch = records[at : at + sizes[k % len(sizes)]]
        at, k = at + len(batch), k + 1
        outcome = score_patient_batch(batch, SCORING, CONTEXT, state, now_ms=10**13)
        assert not outcome.dead_letters
        alerted = {}
        for message in outcome.alerts:
            assert message.value is not None
            alert = json.loads(message.value)
            jsonschema.validate(alert, SCHEMA)
            alerted[(alert["stream"], alert["seq"])] = alert
        b = outcome.beats
        assert b is not None
        for row in range(len(b)):
            key = (b.streams[row], b.seqs[row])
            alert = alerted.get(key)
            assert (alert is not None) == b.abnormal[row]
            if alert is not None:
                assert alert["score"] == b.scores[row]
                assert alert["threshold"] == RULES.v_threshold
            got[key] = (b.scores[row], alert["kind"] if alert else "", b.abnormal[row])
        state.apply(outcome)
    return got


def offline(streams: dict[str, tuple[int, StreamBeats]]) -> Got:
    want: Got = {}
    for name, (_, beats) in streams.items():
        out = SCORING.scorer.score_beats(beats, None)
        for i, seq in enumerate(beats.seq.tolist()):
            want[(name, seq)] = (out.scores[i], KIND_NAMES[int(out.kind[i])], bool(out.is_alert[i]))
    return want


STREAMS = {
    "a": (0, beats_of("a", 120, 0)),
    "b": (1, beats_of("b", 90, 1)),
    "c": (0, beats_of("c", 100, 2)),
}


@pytest.mark.parametrize("sizes", [[1], [7], [500], [3, 50, 1, 19]])
def test_live_batches_score_every_beat_as_the_offline_scorer(sizes: list[int]) -> None:
    want = offline(STREAMS)
    assert sum(v[1] == "V" for v in want.values()) > 10  # the test has alerts to compare
    assert live(interleaved(STREAMS), sizes, DictState()) == want


def test_beats_of_a_stream_out_of_order_in_a_batch_are_scored_in_seq_order() -> None:
    records = interleaved(STREAMS)
    shuffled = []
    for start in range(0, len(records), 40):
        chunk = records[start : start + 40]
        shuffled += chunk[::-1]  # each batch of 40 holds its beats in reverse
    assert live(shuffled, [40], DictState()) == offline(STREAMS)


def test_a_redelivered_batch_changes_no_state_and_later_beats_score_as_once() -> None:
    records = interleaved(STREAMS)
    state = DictState()
    got = live(records[:150], [50], state)
    before = json.dumps(state.records, sort_keys=True)
    # The last 100 come again (a failed publish or commit): same state afterwards.
    live(records[50:150], [60], state)
    assert json.dumps(state.records, sort_keys=True) == before
    got.update(live(records[150:], [50], state))
    assert got == offline(STREAMS)


def test_a_state_from_another_model_version_is_learned_again() -> None:
    records = interleaved(STREAMS)
    state = DictState()
    live(records[:150], [50], state)
    for records_of in state.records.values():
        for r in records_of.values():
            r[PART]["model_version"] = "m-0"
    rest = live(records[150:], [50], state)
    scorer = SCORING.scorer
    name, (_, beats) = "a", STREAMS["a"]
    later = [i for i, s in enumerate(beats.seq.tolist()) if (name, s) in rest]
    fresh = scorer.score_beats(
        stream_beats(
            beats.seq[later], beats.ts_ms[later], beats.samples[later], beats.rr_prev_ms[later]
        ),
        None,
    )
    assert [rest[(name, int(beats.seq[i]))][0] for i in later] == fresh.scores.tolist()


def test_beats_that_do_not_match_the_segmentation_are_dead_lettered() -> None:
    beats = STREAMS["a"][1]
    no_rr = Beat(stream="a", seq=0, ts_ms=1, samples=beats.samples[0])
    short = Beat(stream="a", seq=1, ts_ms=2, samples=beats.samples[0][:30], rr_prev_ms=800.0)
    good = Beat(stream="a", seq=2, ts_ms=3, samples=beats.samples[0], rr_prev_ms=800.0)
    records = []
    for offset, (beat, fmt) in enumerate(
        [(no_rr, "json"), (no_rr, "binary"), (short, "json"), (good, "binary")]
    ):
        key, value, headers = encode(beat, fmt)
        records.append(ConsumedRecord(TOPIC, 0, offset, key, value, headers))
    state = DictState()
    outcome = score_patient_batch(records, SCORING, CONTEXT, state, now_ms=10**13)
    assert outcome.invalid_reasons == {MISSING_RR: 2, "length": 1}
    reasons = [dict(d.headers)["bw-dlq-reason"] for d in outcome.dead_letters]
    assert sorted(reasons) == sorted([b"length", MISSING_RR.encode(), MISSING_RR.encode()])
    assert outcome.beats is not None and outcome.beats.seqs == [2]
    state.apply(outcome)
    assert state.records[0]["a"][PART]["state"]["last_seq"] == 2


def test_beats_of_a_partition_not_held_here_are_left_to_its_owner() -> None:
    records = interleaved(STREAMS)[:60]
    outcome = score_patient_batch(records, SCORING, CONTEXT, DictState((0,)), now_ms=10**13)
    assert outcome.beats is not None and set(outcome.beats.partitions) == {0}
    assert (TOPIC, 1) not in outcome.next_offsets and (TOPIC, 0) in outcome.next_offsets


def test_a_beat_the_model_cannot_score_is_dead_lettered_and_never_learned() -> None:
    def overflowing(scaled: np.ndarray) -> np.ndarray:
        out = half_model(scaled)
        out[np.abs(scaled).max(axis=1) > 1e20] = np.nan  # as a model overflowing on wild input
        return out

    scoring = PatientScoring(StreamScorer(RULES, overflowing, L), "m-1", needs_rr=True)
    beats = STREAMS["a"][1]
    wild = beats.samples.copy()
    wild[40, 20] = 1e30  # finite, so the decoder lets it through
    records = [
        record("a", beats._replace(samples=wild), i, 0, offset=i) for i in range(len(beats.seq))
    ]
    state = DictState((0,))
    outcome = score_patient_batch(records, scoring, CONTEXT, state, now_ms=10**13)
    assert outcome.invalid_reasons == {"unscorable": 1}
    assert outcome.beats is not None and 40 not in outcome.beats.seqs
    keep = [i for i in range(len(beats.seq)) if i != 40]
    want = scoring.scorer.score_beats(
        stream_beats(
            beats.seq[keep], beats.ts_ms[keep], beats.samples[keep], beats.rr_prev_ms[keep]
        ),
        None,
    )
    assert outcome.beats.scores == want.scores.tolist()
    state.apply(outcome)
    assert state.records[0]["a"][PART]["state"] == want.state


def test_the_alert_schema_keeps_old_alerts_valid_and_a_negative_score_only_with_a_kind() -> None:
    old = {
        "alert_id": "p/1/m",
        "stream": "p",
        "seq": 1,
        "ts_ms": 5,
        "detected_ts_ms": 6,
        "score": 0.02,
        "threshold": 0.01,
        "score_ratio": 2.0,
        "model_version": "m",
        "topic": "t",
        "partition": 0,
        "offset": 3,
        "explanation": {"summary": "s", "worst_ranges": [], "regions": []},
    }
    jsonschema.validate(old, SCHEMA)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**old, "score": -0.5}, SCHEMA)
    jsonschema.validate({**old, "score": -0.5, "kind": "S", "learning": False}, SCHEMA)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**old, "kind": "N"}, SCHEMA)
