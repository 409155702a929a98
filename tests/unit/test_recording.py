"""Reading recordings: WFDB and CSV signals, leads by name, AAMI classes, one-line errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from beatwatch.errors import DataError
from beatwatch.recording import aami_class, read_csv_signal, read_recording, read_wfdb
from beatwatch.recording_beats import recording_beats
from beatwatch.segmentation import Segmentation, cut_beats
from tests.support.ecg import SyntheticEcg, synthetic_ecg, write_wfdb


@pytest.fixture(scope="module")
def ecg() -> SyntheticEcg:
    return synthetic_ecg(40.0, seed=5)


@pytest.fixture(scope="module")
def record(ecg, tmp_path_factory) -> Path:
    return write_wfdb(ecg, tmp_path_factory.mktemp("wfdb"), "syn5")


@pytest.mark.parametrize(
    ("symbol", "cls"),
    [
        ("N", "N"),
        ("L", "N"),
        ("R", "N"),
        ("e", "N"),
        ("j", "N"),
        ("A", "S"),
        ("a", "S"),
        ("J", "S"),
        ("S", "S"),
        ("V", "V"),
        ("E", "V"),
        ("F", "F"),
        ("/", "Q"),
        ("f", "Q"),
        ("Q", "Q"),
        ("+", None),
        ("~", None),
        ("|", None),
        ("[", None),
        ("!", None),
        ("x", None),
    ],
)
def test_aami_classes_follow_ec57(symbol, cls):
    assert aami_class(symbol) == cls


def test_wfdb_record_with_annotations(record, ecg):
    rec = read_wfdb(record)
    assert rec.name == "syn5" and rec.fs_hz == 360.0 and rec.lead_names == ("MLII", "V1")
    assert rec.signal.shape == ecg.signal.shape
    np.testing.assert_allclose(rec.signal, ecg.signal, atol=0.003)  # 200 adu/mV
    np.testing.assert_array_equal(rec.ann_index, ecg.r_index)
    assert rec.ann_symbol == ecg.symbols and set(rec.ann_class) == {"N", "V"}
    assert not rec.is_paced
    # Also with the .hea suffix, and through the dispatcher.
    assert read_wfdb(f"{record}.hea").n_samples == rec.n_samples
    assert read_recording(record).n_samples == rec.n_samples


def test_leads_are_picked_by_name_whatever_their_order(tmp_path, ecg):
    swapped = SyntheticEcg(
        ecg.signal[:, ::-1].copy(), ecg.r_index, ecg.symbols, lead_names=("V5", "MLII")
    )  # like record 114
    rec = read_wfdb(write_wfdb(swapped, tmp_path, "r114"))
    assert rec.lead_index() == 1 and rec.lead_index("MLII") == 1 and rec.lead_index("V5") == 0
    np.testing.assert_allclose(rec.lead(), ecg.signal[:, 0], atol=0.003)
    with pytest.raises(DataError, match="no lead 'II'"):
        rec.lead_index("II")


def test_missing_or_broken_wfdb_files_are_one_line_errors(tmp_path, record):
    with pytest.raises(DataError, match="no WFDB record there"):
        read_wfdb(tmp_path / "nothing")
    (tmp_path / "broken.hea").write_text("this is not a header\n")
    with pytest.raises(DataError) as caught:
        read_wfdb(tmp_path / "broken")
    assert "\n" not in str(caught.value)
    header = Path(f"{record}.hea").read_text()
    (tmp_path / "nodat.hea").write_text(header.replace("syn5", "nodat"))
    with pytest.raises(DataError, match="nodat") as caught:
        read_wfdb(tmp_path / "nodat")
    assert "\n" not in str(caught.value)


def test_record_without_annotations_has_none(tmp_path, record):
    for suffix in (".hea", ".dat"):
        (tmp_path / f"syn5{suffix}").write_bytes(Path(f"{record}{suffix}").read_bytes())
    rec = read_wfdb(tmp_path / "syn5")
    assert rec.ann_index is None and not rec.has_annotations and rec.ann_class == []


def test_csv_signal(tmp_path, ecg):
    path = tmp_path / "sig.csv"
    rows = ["MLII,V1"] + [f"{a:.5f},{b:.5f}" for a, b in ecg.signal]
    path.write_text("\n".join(rows) + "\n")
    rec = read_csv_signal(path, 360.0)
    assert rec.name == "sig" and rec.lead_names == ("MLII", "V1") and rec.ann_index is None
    np.testing.assert_allclose(rec.signal, ecg.signal, atol=1e-5)
    assert read_recording(path, fs_hz=360.0).n_samples == ecg.signal.shape[0]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty file"),
        ("1.0,2.0\n3.0,4.0\n", "must name the leads"),
        ("MLII,V1\n", "no samples"),
        ("MLII,V1\n1.0,2.0\n3.0\n", "line 3 has 1 values"),
        ("MLII,V1\n1.0,2.0\n3.0,abc\n", "line 3: 'abc' is not a number"),
        ("MLII,V1\n1.0,nan\n", "line 2: non-finite"),
        ("MLII,\n1.0,2.0\n", "empty lead name"),
    ],
)
def test_malformed_csv_signals_are_one_line_errors(tmp_path, text, message):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(DataError, match=message) as caught:
        read_csv_signal(path, 360.0)
    assert "\n" not in str(caught.value)


def test_csv_needs_a_rate_and_an_existing_file(tmp_path):
    with pytest.raises(DataError, match="--fs-hz"):
        read_recording(tmp_path / "x.csv")
    with pytest.raises(DataError, match="cannot read"):
        read_csv_signal(tmp_path / "x.csv", 360.0)
    with pytest.raises(DataError, match="sampling rate"):
        read_csv_signal(tmp_path / "x.csv", 0.0)


def test_recording_beats_equal_the_offline_cut_at_any_step(record):
    rec = read_wfdb(record)
    seg = Segmentation()
    from beatwatch.qrs import detect_qrs

    peaks = detect_qrs(rec.lead(), rec.fs_hz)
    offline = cut_beats(rec.signal, rec.fs_hz, rec.lead_names, peaks, seg)
    for chunk_s in (0.05, 0.1, 1.0, 7.3):
        beats = list(recording_beats(rec, seg, chunk_s=chunk_s))
        assert [b.r_index for b in beats] == peaks[offline.kept].tolist()
        np.testing.assert_array_equal(np.stack([b.samples for b in beats]), offline.beats)
        # A beat is emitted once its window has arrived, never before.
        assert all(b.arrival_s * rec.fs_hz >= b.r_index for b in beats)


def test_recording_beats_from_annotations_carry_their_classes(record, ecg):
    rec = read_wfdb(record)
    beats = list(recording_beats(rec, Segmentation(), from_annotations=True))
    classes = dict(zip(ecg.r_index.tolist(), ecg.symbols, strict=True))
    assert beats and all(b.r_index in classes for b in beats)
    assert [b.beat_class for b in beats] == [classes[b.r_index] for b in beats]
    assert [b.label for b in beats] == [int(classes[b.r_index] == "N") for b in beats]


def test_a_missing_lead_is_refused_before_any_work(record):
    rec = read_wfdb(record)
    with pytest.raises(DataError, match="no lead"):
        next(recording_beats(rec, Segmentation(leads=("II|ML2",))))
