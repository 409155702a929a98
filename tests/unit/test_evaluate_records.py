"""``beatwatch evaluate --wfdb``: the live path on annotated records, and its refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from beatwatch.cli import main as beatwatch_main
from beatwatch.segmentation import Segmentation
from beatwatch.wire import Beat
from tests.support.ecg import synthetic_ecg, write_wfdb
from trainer.evaluate_records import evaluate_records

# Every test reads two synthetic 5.5-minute records, written once (seconds of CPU).
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wfdb_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("records")
    write_wfdb(synthetic_ecg(330.0, seed=11), directory, "s1")
    write_wfdb(synthetic_ecg(330.0, seed=12, pvc_every=5), directory, "s2")
    return directory


def oracle(stream: str, beats: list[Beat]):
    """A stand-in scorer for the plumbing: alerts as V exactly the beats the reference calls V."""
    alerts = np.array([b.beat_class == "V" for b in beats])
    return alerts.astype(float), alerts, ["V" if a else None for a in alerts]


def test_live_path_scores_every_record_with_its_own_stream(wfdb_dir):
    seen: list[tuple[str, list[int]]] = []

    def scoring(stream, beats):
        seen.append((stream, [b.seq for b in beats]))
        return oracle(stream, beats)

    report = evaluate_records(wfdb_dir, None, Segmentation(), scoring)
    assert [s for s, _ in seen] == ["s1", "s2"]
    assert all(seqs == list(range(len(seqs))) for _, seqs in seen)  # in order, per stream
    g = report["gross"]
    assert g["qrs"]["se"] == 1.0 and g["qrs"]["ppv"] == 1.0
    assert g["veb"]["se"] == 1.0 and g["veb"]["ppv"] == 1.0
    assert g["class_counts"]["V"] > 0 and g["false_alerts"] == 0
    assert g["auroc_n_vs_v"] == 1.0
    assert report["cost"]["signal_hours"] == pytest.approx(2 * 330 / 3600)
    assert [r["record"] for r in report["per_record"]] == ["s1", "s2"]


def test_qrs_only_command_prints_a_table_and_writes_json(wfdb_dir, tmp_path, capsys):
    out = tmp_path / "qrs.json"
    code = beatwatch_main(
        ["evaluate", "--wfdb", str(wfdb_dir), "--records", "s2", "--qrs-only", "--json", str(out)]
    )
    printed = capsys.readouterr().out
    assert code == 0
    assert "gross" in printed and "100.00" in printed and "CPU per hour of signal" in printed
    report = json.loads(out.read_text())
    assert report["records"] == ["s2"] and report["gross"]["qrs"]["fn"] == 0
    assert report["cost"]["qrs_cpu_s_per_hour"] > 0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--records", "s1"], "need --wfdb"),
        (["--qrs-only"], "need --wfdb"),
        (["--wfdb", "{dir}/none", "--qrs-only"], "is not a directory"),
        (["--wfdb", "{dir}", "--records", "s9", "--qrs-only"], "no record s9"),
        (["--wfdb", "{dir}", "--qrs-only", "--all-rows"], "go without it"),
        (["--all-rows"], "needs --data"),
    ],
)
def test_refusals_are_one_line(wfdb_dir, capsys, argv, message):
    args = [a.replace("{dir}", str(wfdb_dir)) for a in argv]
    assert beatwatch_main(["evaluate", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err


def test_a_model_of_pre_cut_beats_is_refused_for_records(wfdb_dir, capsys, tmp_path):
    model = Path(__file__).resolve().parents[2] / "models" / "ecg5000"
    code = beatwatch_main(["evaluate", "--wfdb", str(wfdb_dir), "--model", str(model)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "records no segmentation" in err and "\n" not in err


def test_live_alerts_are_compared_beat_for_beat(wfdb_dir, tmp_path):
    from trainer.evaluate_records import read_live_alerts

    offline: dict[str, list[Beat]] = {}

    def scoring(stream, beats):
        offline[stream] = beats
        return oracle(stream, beats)

    evaluate_records(wfdb_dir, ["s2"], Segmentation(), scoring)
    start_ms = 1_765_000_000_000
    alerted = [b for b in offline["s2"] if b.beat_class == "V"]
    assert len(alerted) > 10
    lines = [
        json.dumps({"stream": "s2", "seq": 7 + i, "ts_ms": start_ms + b.ts_ms, "kind": "V"})
        for i, b in enumerate(alerted)
    ]
    path = tmp_path / "alerts.jsonl"
    path.write_text("\n".join(lines) + "\n")
    report = evaluate_records(
        wfdb_dir, ["s2"], Segmentation(), oracle, live_alerts=read_live_alerts(path)
    )
    live = report["live"]
    assert live["equal"] and live["live"] == live["evaluate"]
    assert live["per_record"][0]["live_alerts_not_on_a_beat"] == 0
    # One alert lost and one on no beat (both in the scored part, after 5 min).
    lines[-2] = json.dumps({"stream": "s2", "ts_ms": start_ms + alerted[-2].ts_ms + 1})
    path.write_text("\n".join(lines[:-1]) + "\n")
    report = evaluate_records(
        wfdb_dir, ["s2"], Segmentation(), oracle, live_alerts=read_live_alerts(path)
    )
    comparison = report["live"]["per_record"][0]
    assert not report["live"]["equal"]
    assert comparison["beats_alerted_differently"] == 2
    assert comparison["live_alerts_not_on_a_beat"] == 1
    assert report["live"]["live"]["veb"]["tp"] == report["live"]["evaluate"]["veb"]["tp"] - 2


@pytest.mark.tensorflow
def test_all_rows_scores_any_labelled_csv(tmp_path, capsys):
    """Not the training file: every row is scored and the metrics printed and written."""
    rng = np.random.default_rng(0)
    wave = np.sin(np.linspace(0, 6, 140))
    rows = [
        ",".join(f"{v:.4f}" for v in wave * (1 + 0.1 * rng.standard_normal())) + f",{i % 2}"
        for i in range(30)
    ]
    data = tmp_path / "other.csv"
    data.write_text("\n".join(rows) + "\n")
    out = tmp_path / "m.json"
    code = beatwatch_main(["evaluate", "--data", str(data), "--all-rows", "--json", str(out)])
    printed = capsys.readouterr().out
    assert code == 0 and "all 30 rows" in printed
    metrics = json.loads(out.read_text())
    assert metrics["n"] == 30
    assert sum(metrics["confusion"].values()) == 30
    # Without --all-rows the same file is refused: it is not the training data.
    assert beatwatch_main(["evaluate", "--data", str(data)]) == 2
    err = capsys.readouterr().err
    assert "is not the training data" in err and "--all-rows" in err


def test_the_qrs_lead_is_chosen_by_name(wfdb_dir, capsys):
    code = beatwatch_main(
        ["evaluate", "--wfdb", str(wfdb_dir), "--records", "s1", "--qrs-only", "--qrs-lead", "V1"]
    )
    assert code == 0 and "100.00" in capsys.readouterr().out
    code = beatwatch_main(
        ["evaluate", "--wfdb", str(wfdb_dir), "--records", "s1", "--qrs-only", "--qrs-lead", "X"]
    )
    assert code == 2 and "no lead 'X'" in capsys.readouterr().err
