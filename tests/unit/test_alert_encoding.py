"""Alerts written for a whole batch at once equal, once parsed, the ones built beat by beat."""

from __future__ import annotations

import numpy as np
import orjson
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from beatwatch.alert import (
    build_alert,
    decode_alert,
    encode_alert,
    encode_alerts,
    explain,
    explain_numbers,
)
from beatwatch.artifact import ECG5000_REGIONS
from beatwatch.wire import Beat

LENGTH = 140
REGION_SETS = [
    list(ECG5000_REGIONS),
    [],
    [{"name": 'odd "name" \\ é', "start": 0, "end": 70}, {"name": "rest", "start": 70, "end": 999}],
]
finite = st.floats(min_value=1e-12, max_value=1e6, allow_nan=False, allow_infinity=False)


@settings(max_examples=60, deadline=None)
@given(
    errors=arrays(
        np.float32,
        st.tuples(st.integers(1, 6), st.just(LENGTH)),
        elements=st.floats(0, 50, width=32),
    ),
    regions=st.sampled_from(REGION_SETS),
    stream=st.text(min_size=1, max_size=12),
    threshold=st.one_of(st.just(0.0), finite),
    with_p=st.booleans(),
    data=st.data(),
)
def test_batch_alerts_equal_the_beat_by_beat_ones(
    errors: np.ndarray,
    regions: list[dict[str, object]],
    stream: str,
    threshold: float,
    with_p: bool,
    data: st.DataObject,
) -> None:
    m = errors.shape[0]
    scores = [data.draw(finite) for _ in range(m)]
    p_values = [data.draw(st.floats(1e-9, 1.0)) for _ in range(m)] if with_p else None
    labels = [data.draw(st.sampled_from([None, 0, 1])) for _ in range(m)]
    streams = [stream + str(i % 2) for i in range(m)]
    seqs = [data.draw(st.integers(0, 2**53)) for _ in range(m)]
    ts = [data.draw(st.integers(0, 2**53)) for _ in range(m)]
    written = encode_alerts(
        streams=streams,
        seqs=seqs,
        ts_ms=ts,
        labels=labels,
        scores=scores,
        p_values=p_values,
        explained=explain_numbers(errors, regions),
        threshold=threshold,
        model_version='m"v1',
        topics=["beats"] * m,
        partitions=list(range(m)),
        offsets=[10 + i for i in range(m)],
        detected_ts_ms=123,
    )
    for i in range(m):
        expected = build_alert(
            Beat(streams[i], seqs[i], ts[i], np.zeros(LENGTH, np.float32), labels[i]),
            score=scores[i],
            threshold=threshold,
            model_version='m"v1',
            explanation=explain(errors[i], regions),
            topic="beats",
            partition=i,
            offset=10 + i,
            detected_ts_ms=123,
            p_value=None if p_values is None else p_values[i],
        )
        assert orjson.loads(written[i]) == orjson.loads(encode_alert(expected))
        assert decode_alert(written[i]) == expected


def test_top_region_is_the_first_of_the_explanation() -> None:
    errors = np.zeros((2, LENGTH), np.float32)
    errors[0, 45:60] = 1.0  # the QRS complex of ECG5000_REGIONS
    errors[1, 100:130] = 1.0
    explained = explain_numbers(errors, ECG5000_REGIONS)
    for row in range(2):
        assert explained.top_region(row) == explain(errors[row], ECG5000_REGIONS).regions[0].name
    assert explain_numbers(errors, []).top_region(0) is None
