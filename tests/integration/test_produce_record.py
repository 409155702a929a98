"""``beatwatch produce --record``: a WFDB record replayed onto a real broker, read back.

The beats on the topic must be exactly the offline cut of the same record:
the QRS detector over the whole signal, then ``cut_beats`` with the model's
segmentation; with ``ts_ms`` = start + R time, the rhythm fields, and the
reference labels.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from jsonschema import Draft202012Validator

from beatwatch.cli import main as beatwatch_main
from beatwatch.kafka import KafkaSettings
from beatwatch.qrs import detect_qrs
from beatwatch.recording import read_wfdb
from beatwatch.segmentation import Segmentation, cut_beats
from beatwatch.wire import decode
from tests.support.ecg import synthetic_ecg, write_wfdb
from tests.support.pipeline import REPO_ROOT, read_topic

SEG = Segmentation()


@pytest.fixture(scope="module")
def record(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_wfdb(synthetic_ecg(60.0, seed=3), tmp_path_factory.mktemp("rec"), "syn3")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An artifact directory recording only a segmentation: all the producer reads."""
    directory = tmp_path_factory.mktemp("model")
    (directory / "artifact.json").write_text(json.dumps({"segmentation": SEG.to_dict()}))
    return directory


@pytest.mark.parametrize("fmt", ["json", "binary"])
def test_replayed_record_beats_are_the_offline_cut(
    kafka_bootstrap, topic_prefix, record, model_dir, fmt, capsys
):
    topic = f"{topic_prefix}-beats"
    code = beatwatch_main(
        [
            "produce",
            "--bootstrap-servers",
            kafka_bootstrap,
            "--beats-topic",
            topic,
            "--record",
            str(record),
            "--model",
            str(model_dir),
            "--speed",
            "40",
            "--format",
            fmt,
            "--first-seq",
            "0",
            "--progress-interval-s",
            "0",
        ]
    )
    assert code == 0, capsys.readouterr().err

    rec = read_wfdb(record)
    peaks = detect_qrs(rec.lead("MLII"), rec.fs_hz)
    offline = cut_beats(rec.signal, rec.fs_hz, rec.lead_names, peaks, SEG)
    r_peaks = peaks[offline.kept]
    assert len(offline) > 50

    messages = read_topic(KafkaSettings(bootstrap_servers=kafka_bootstrap), topic, len(offline))
    beats = sorted(
        (decode(m.key, m.value, m.headers, expected_length=SEG.n_values) for m in messages),
        key=lambda b: b.seq,
    )
    assert [b.seq for b in beats] == list(range(len(offline)))
    assert {b.stream for b in beats} == {"syn3"}
    np.testing.assert_array_equal(np.stack([b.samples for b in beats]), offline.beats)
    # ts_ms = the replay's start + the R peak's time.
    start_ms = beats[0].ts_ms - round(r_peaks[0] * 1000 / rec.fs_hz)
    assert [b.ts_ms for b in beats] == [start_ms + round(r * 1000 / rec.fs_hz) for r in r_peaks]
    rr_prev = np.array([b.rr_prev_ms for b in beats], dtype=float)
    rr_local = np.array([b.rr_local_ms for b in beats], dtype=float)
    # Exactly the offline values, in both formats (binary carries them as float64).
    np.testing.assert_array_equal(rr_prev, offline.rr_prev_ms)
    np.testing.assert_array_equal(rr_local, offline.rr_local_ms)
    # Labels from the reference annotations: every synthetic beat is found within 150 ms.
    assert rec.ann_index is not None
    nearest = np.abs(rec.ann_index[None, :] - r_peaks[:, None]).argmin(axis=1)
    expected = [rec.ann_class[i] for i in nearest]
    assert [b.beat_class for b in beats] == expected
    assert [b.label for b in beats] == [int(c == "N") for c in expected]
    assert {"N", "V"} <= set(expected)
    if fmt == "json":
        schema = json.loads((REPO_ROOT / "docs" / "schemas" / "beat.schema.json").read_text())
        validator = Draft202012Validator(schema)
        for m in messages:
            validator.validate(json.loads(m.value))
