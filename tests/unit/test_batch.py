from dataclasses import dataclass, field

import numpy as np
import orjson
import pytest

from beatwatch.wire import Beat, encode
from detector.batch import (
    DLQ_OMITTED_BYTES,
    DLQ_REASON,
    DLQ_SOURCE_OFFSET,
    MAX_DEAD_LETTER_PAYLOAD_BYTES,
    ModelContext,
    dead_letter,
    process_batch,
    wait_before_poll_s,
)

LENGTH = 8


@dataclass
class FakeRecord:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]] = field(default_factory=list)


class MeanAbsScorer:
    """Pure stand-in for the model: score = mean |x|, per-sample error = |x|."""

    def score(self, beats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        errors = np.abs(beats)
        return errors.mean(axis=1).astype(np.float64), errors

    def p_values(self, scores: np.ndarray) -> np.ndarray | None:
        return np.full(scores.shape, 0.01)


MODEL = ModelContext(
    input_length=LENGTH,
    threshold=1.0,
    model_version="m-1",
    regions=[{"name": "A", "start": 0, "end": 4}, {"name": "B", "start": 4, "end": 8}],
)


def record(offset: int, level: float, partition: int = 0, fmt: str = "json") -> FakeRecord:
    samples = np.zeros(LENGTH, dtype=np.float32)
    samples[4:] = level
    beat = Beat(stream=f"p-{offset % 3}", seq=offset, ts_ms=1_000, samples=samples, label=1)
    key, value, headers = encode(beat, fmt)
    return FakeRecord("beats", partition, offset, key, value, headers)


def test_every_record_is_scored_or_dead_lettered_once():
    records = [
        record(0, 0.1),
        record(1, 5.0, fmt="binary"),
        FakeRecord("beats", 0, 2, b"p-9", b"{bad"),
        record(3, 3.0, partition=1),
        FakeRecord(
            "beats",
            1,
            4,
            b"p-9",
            orjson.dumps({"stream": "p-9", "seq": 1, "ts_ms": 1, "samples": [1.0] * 3}),
        ),
    ]
    outcome = process_batch(records, MeanAbsScorer(), MODEL, now_ms=3_000)
    assert outcome.scored == 3
    assert len(outcome.dead_letters) == 2
    assert dict(outcome.invalid_reasons) == {"decode": 1, "length": 1}
    assert outcome.next_offsets == {("beats", 0): 3, ("beats", 1): 5}
    np.testing.assert_allclose(outcome.latency_s, [2.0, 2.0, 2.0])


def test_alerts_are_exactly_the_beats_over_threshold_with_explanation():
    records = [record(0, 0.1), record(1, 5.0), record(2, 2.0), record(3, 1.0)]
    outcome = process_batch(records, MeanAbsScorer(), MODEL, now_ms=2_000)
    alerts = [orjson.loads(a.value or b"") for a in outcome.alerts]
    assert [a["seq"] for a in alerts] == [1]  # 5.0/2 = 2.5 > 1; 2.0/2 = 1.0 is not over
    alert = alerts[0]
    assert alert["alert_id"] == "p-1/1/m-1"
    assert alert["score"] == 2.5 and alert["threshold"] == 1.0 and alert["p_value"] == 0.01
    assert (alert["partition"], alert["offset"], alert["model_version"]) == (0, 1, "m-1")
    assert alert["explanation"]["regions"][0]["name"] == "B"
    assert alert["explanation"]["regions"][0]["error_share"] == 1.0
    assert outcome.alerts[0].key == b"p-1"


def test_dead_letter_keeps_original_bytes_and_names_reason_and_source():
    bad = FakeRecord("beats", 2, 77, b"k", b"\x00garbage", [("x-trace", b"abc")])
    outcome = process_batch([bad], MeanAbsScorer(), MODEL, now_ms=0)
    letter = outcome.dead_letters[0]
    headers = dict(letter.headers)
    assert (letter.key, letter.value) == (b"k", b"\x00garbage")
    assert headers[DLQ_REASON] == b"decode"
    assert headers[DLQ_SOURCE_OFFSET] == b"77"
    assert headers["x-trace"] == b"abc"
    assert outcome.scored == 0


def test_unexpected_decode_error_is_dead_lettered_not_raised(monkeypatch):
    import beatwatch.wire.batch

    def explode(*_args, **_kwargs):
        raise RuntimeError("boom")

    # An unknown content type skips the batch fast paths and goes through decode().
    monkeypatch.setattr(beatwatch.wire.batch, "decode", explode)
    odd = FakeRecord("beats", 0, 1, b"p-1", b"x", [("content-type", b"text/odd")])
    outcome = process_batch([odd], MeanAbsScorer(), MODEL, now_ms=0)
    assert outcome.scored == 0
    assert dict(outcome.invalid_reasons) == {"internal": 1}
    assert dict(outcome.dead_letters[0].headers)[DLQ_REASON] == b"internal"


def test_the_batching_rule_waits_out_the_linger_after_a_partial_batch_only() -> None:
    # 30 ms since a poll that returned 5 of at most 100 records: wait the rest of 50 ms.
    assert wait_before_poll_s(50, 0.030, last_batch=5, max_batch=100) == pytest.approx(0.020)
    assert wait_before_poll_s(50, 0.080, last_batch=5, max_batch=100) == 0.0  # already waited
    assert wait_before_poll_s(50, 0.0, last_batch=100, max_batch=100) == 0.0  # full: a backlog
    assert wait_before_poll_s(50, 0.0, last_batch=0, max_batch=100) == 0.0  # the poll waited
    assert wait_before_poll_s(0, 0.0, last_batch=5, max_batch=100) == 0.0  # the default


def publishable(key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]]) -> bool:
    """What ``KafkaProducer.send`` checks before it accepts a record."""
    return (key is not None or value is not None) and all(
        isinstance(name, str) and isinstance(raw, bytes) for name, raw in headers
    )


def test_dead_letters_of_records_kafka_python_cannot_publish_are_made_publishable():
    no_key_no_value = FakeRecord("beats", 0, 1, None, None)
    null_header = FakeRecord("beats", 0, 2, b"p-1", b"{}", [("content-type", None)])  # type: ignore[list-item]
    oversized = FakeRecord(
        "beats", 0, 3, b"p-1", b"x" * MAX_DEAD_LETTER_PAYLOAD_BYTES, [("h", b"1")]
    )
    as_is = FakeRecord("beats", 0, 4, b"p-1", b"{bad", [("content-type", b"application/json")])
    letters = [dead_letter(r, "r", "d") for r in (no_key_no_value, null_header, oversized, as_is)]
    assert all(publishable(letter.key, letter.value, letter.headers) for letter in letters)
    assert (letters[0].key, letters[0].value) == (None, b"")
    assert letters[1].headers[0] == ("content-type", b"")
    assert (letters[2].key, letters[2].value) == (None, b"")
    omitted = dict(letters[2].headers)[DLQ_OMITTED_BYTES]
    assert int(omitted) == 3 + MAX_DEAD_LETTER_PAYLOAD_BYTES + 2
    assert "h" not in dict(letters[2].headers)
    # Anything kafka-python can publish is copied unchanged.
    assert (letters[3].key, letters[3].value) == (as_is.key, as_is.value)
    assert letters[3].headers[0] == as_is.headers[0]
    assert DLQ_OMITTED_BYTES not in dict(letters[3].headers)
