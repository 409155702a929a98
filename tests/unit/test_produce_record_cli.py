"""``beatwatch produce --record``: refusals before any broker is contacted, stream layout."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from beatwatch.cli import main as beatwatch_main
from beatwatch.recording import read_wfdb
from beatwatch.segmentation import Segmentation
from producer.record_source import load_records, merge_streams, stream_names
from tests.support.ecg import synthetic_ecg, write_wfdb

NO_BROKER = ["--bootstrap-servers", "127.0.0.1:9", "--progress-interval-s", "0"]


@pytest.fixture(scope="module")
def record(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_wfdb(synthetic_ecg(30.0, seed=2), tmp_path_factory.mktemp("rec"), "syn2")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("model")
    (directory / "artifact.json").write_text(json.dumps({"segmentation": Segmentation().to_dict()}))
    return directory


def _refused(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert beatwatch_main(["produce", *NO_BROKER, *argv]) == 2
    err: str = capsys.readouterr().err.strip()
    assert "\n" not in err
    return err


def test_record_and_data_together_are_refused(capsys, record, model_dir):
    err = _refused(capsys, "--record", str(record), "--model", str(model_dir), "--data", "x.csv")
    assert "give --record or --data" in err


def test_missing_record_is_refused(capsys, tmp_path, model_dir):
    err = _refused(capsys, "--record", str(tmp_path / "nope"), "--model", str(model_dir))
    assert "no WFDB record there" in err


def test_csv_signal_needs_its_rate(capsys, tmp_path, model_dir):
    path = tmp_path / "sig.csv"
    path.write_text("MLII,V1\n" + "0.1,0.2\n" * 100)
    assert "--fs-hz" in _refused(capsys, "--record", str(path), "--model", str(model_dir))


def test_a_model_without_segmentation_is_refused(capsys, record, tmp_path):
    (tmp_path / "artifact.json").write_text(json.dumps({"format_version": 1}))
    err = _refused(capsys, "--record", str(record), "--model", str(tmp_path))
    assert "records no segmentation" in err


def test_beats_from_annotations_need_annotations(capsys, tmp_path, record, model_dir):
    for suffix in (".hea", ".dat"):
        (tmp_path / f"syn2{suffix}").write_bytes(Path(f"{record}{suffix}").read_bytes())
    err = _refused(
        capsys,
        "--record",
        str(tmp_path / "syn2"),
        "--model",
        str(model_dir),
        "--beats-from-annotations",
    )
    assert "has no annotations" in err


def test_a_missing_lead_is_refused(capsys, tmp_path, record):
    seg = Segmentation(leads=("II|ML2",))
    (tmp_path / "artifact.json").write_text(json.dumps({"segmentation": seg.to_dict()}))
    assert "no lead" in _refused(capsys, "--record", str(record), "--model", str(tmp_path))


def test_streams_interleave_by_signal_time_and_loop_continues_time(record):
    records = load_records(
        [str(record), str(record)], Segmentation(), fs_hz=None, from_annotations=False
    )
    assert [r.stream for r in records] == ["syn2", "syn2-2"]
    assert stream_names([read_wfdb(record)] * 3) == ["syn2", "syn2-2", "syn2-3"]
    beats = list(merge_streams(records, Segmentation(), start_ms=1_000_000))
    due = [b.due_s for b in beats]
    assert due == sorted(due)
    per_stream = {s: [b for b in beats if b.stream == s] for s in ("syn2", "syn2-2")}
    assert len(per_stream["syn2"]) == len(per_stream["syn2-2"]) > 20
    first = per_stream["syn2"][0]
    assert first.ts_ms == 1_000_000 + round(first.beat.r_index * 1000 / 360)
    looped = merge_streams(records[:1], Segmentation(), start_ms=1_000_000, loop=True)
    n = len(per_stream["syn2"])
    two_passes = [next(looped) for _ in range(2 * n)]
    duration_ms = round(read_wfdb(record).duration_s * 1000)
    assert two_passes[n].ts_ms == two_passes[0].ts_ms + duration_ms
    assert np.all(np.diff([b.ts_ms for b in two_passes]) > 0)


def test_an_unknown_qrs_lead_is_refused(capsys, record, model_dir):
    err = _refused(capsys, "--record", str(record), "--model", str(model_dir), "--qrs-lead", "V5")
    assert "no lead 'V5'" in err


def test_a_csv_signal_streams_beats_without_labels(tmp_path, record):
    rec = read_wfdb(record)
    path = tmp_path / "ward7.csv"
    rows = [",".join(rec.lead_names)] + [f"{a:.4f},{b:.4f}" for a, b in rec.signal]
    path.write_text("\n".join(rows) + "\n")
    records = load_records([str(path)], Segmentation(), fs_hz=360.0, from_annotations=False)
    beats = list(merge_streams(records, Segmentation(), start_ms=0))
    assert records[0].stream == "ward7" and len(beats) > 20
    assert all(b.beat.label is None and b.beat.beat_class is None for b in beats)
    from_wfdb = list(
        merge_streams(
            load_records([str(record)], Segmentation(), fs_hz=None, from_annotations=False),
            Segmentation(),
            start_ms=0,
        )
    )
    assert [b.beat.r_index for b in beats] == [b.beat.r_index for b in from_wfdb]
