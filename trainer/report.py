"""The training report: metrics.json, summary.md and PNG plots (matplotlib, Agg backend)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from beatwatch.artifact_config import ArtifactConfig
from beatwatch.data import Dataset
from trainer.metrics import pr_curve, roc_curve
from trainer.pipeline import Outcome

EXAMPLES_PER_KIND = 2


def write_report(
    directory: Path, outcome: Outcome, dataset: Dataset, record: ArtifactConfig
) -> None:
    """Write metrics.json, summary.md and the plots into ``directory``.

    Args:
        directory: created if needed.
        outcome: the training run.
        dataset: the data it ran on.
        record: the artifact.json content (command, model version, threshold...).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    directory.mkdir(parents=True, exist_ok=True)
    (directory / "metrics.json").write_text(
        json.dumps(outcome.metrics, indent=1) + "\n", encoding="utf-8"
    )
    normal = dataset.normal[outcome.split.test]
    scores = outcome.test_scores

    fig, ax = plt.subplots(figsize=(6, 4))
    for key, values in outcome.fitted.history.items():
        ax.plot(np.arange(1, len(values) + 1), values, label=key)
    ax.set(xlabel="epoch", ylabel=outcome.config.loss, yscale="log", title="Loss curves")
    ax.axvline(outcome.fitted.best_epoch, color="grey", linestyle=":", label="kept weights")
    ax.legend()
    fig.savefig(directory / "loss.png", dpi=90, bbox_inches="tight")
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    bins = np.geomspace(max(scores.min(), 1e-9), scores.max(), 60).tolist()
    ax.hist(scores[normal], bins=bins, alpha=0.6, label="normal (test)")
    ax.hist(scores[~normal], bins=bins, alpha=0.6, label="abnormal (test)")
    ax.axvline(outcome.threshold, color="black", linestyle="--", label="threshold")
    ax.set(xscale="log", xlabel="reconstruction error", ylabel="beats", title="Test errors")
    ax.legend()
    fig.savefig(directory / "errors.png", dpi=90, bbox_inches="tight")
    plt.close(fig)

    fpr, tpr = roc_curve(scores, ~normal)
    precision, recall, _ = pr_curve(scores, ~normal)
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.plot(fpr, tpr)
    left.plot([0, 1], [0, 1], color="grey", linestyle=":")
    left.set(
        xlabel="false-positive rate",
        ylabel="true-positive rate",
        title=f"ROC (AUROC {outcome.metrics['auroc']:.4f})",
    )
    right.step(recall, precision, where="post")
    right.set(
        xlabel="recall",
        ylabel="precision",
        title=f"PR, anomaly positive (AUPRC {outcome.metrics['auprc']:.4f})",
    )
    fig.savefig(directory / "roc_pr.png", dpi=90, bbox_inches="tight")
    plt.close(fig)

    test_rows = outcome.split.test
    picks = [*test_rows[normal][:EXAMPLES_PER_KIND], *test_rows[~normal][:EXAMPLES_PER_KIND]]
    beats = dataset.x[picks]
    _, per_sample = outcome.scorer.score(beats)
    scaled = outcome.scaling.apply(beats)
    reconstructed = outcome.scorer.reconstruct(beats)
    fig, axes = plt.subplots(len(picks), 1, figsize=(7, 2.2 * len(picks)), sharex=True)
    for ax, row, beat, recon, error in zip(
        axes, picks, scaled, reconstructed, per_sample, strict=True
    ):
        samples = np.arange(len(beat))
        ax.plot(samples, beat, label="beat (scaled)")
        ax.plot(samples, recon, label="reconstruction")
        ax.fill_between(samples, beat, recon, alpha=0.3, color="red", label="error")
        kind = "normal" if dataset.normal[row] else "abnormal"
        ax.set_title(f"row {row} ({kind}): score {error.mean():.4g}", fontsize=9)
    axes[0].legend(fontsize=7)
    axes[-1].set_xlabel("sample")
    fig.savefig(directory / "examples.png", dpi=80, bbox_inches="tight")
    plt.close(fig)

    (directory / "summary.md").write_text(summary_markdown(outcome, record), encoding="utf-8")


def summary_markdown(outcome: Outcome, record: ArtifactConfig) -> str:
    """A short Markdown summary of one run."""
    m = outcome.metrics
    c = m["confusion"]
    data = record.data
    source = None if data is None else data.source
    sha256 = "" if data is None or data.sha256 is None else data.sha256
    calibrated_on = None if record.calibration is None else record.calibration.source
    lines = [
        f"# Training report: {record.model_version or outcome.config.preset}",
        "",
        f"Command: `{record.command or ''}`",
        "",
        f"Data: `{source}` (sha256 `{sha256[:12]}...`); "
        f"train {len(outcome.split.train)}, calibration {len(outcome.split.calibration)}, "
        f"test {len(outcome.split.test)} rows.",
        "",
        f"Preset `{outcome.config.preset}`: encoder {list(outcome.config.encoder)}, decoder "
        f"{list(outcome.config.decoder)}, loss {outcome.config.loss}, "
        f"{outcome.fitted.epochs_run} epochs (kept {outcome.fitted.best_epoch}), "
        f"{outcome.train_seconds:.1f} s.",
        "",
        f"Threshold {outcome.threshold:.6g} ({outcome.config.threshold_rule} "
        f"{outcome.config.threshold_params}, on {calibrated_on}).",
        "",
        "Test metrics (anomaly = positive, alert when score > threshold):",
        "",
        "| accuracy | precision | recall | F1 | AUROC | AUPRC | false-alarm rate |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        f"| {m['accuracy']:.4f} | {m['precision']:.4f} | {m['recall']:.4f} | {m['f1']:.4f} "
        f"| {m['auroc']:.4f} | {m['auprc']:.4f} | {m['false_alarm_rate']:.4f} |",
        "",
        f"Confusion: TP {c['tp']}, FP {c['fp']}, TN {c['tn']}, FN {c['fn']}. "
        f"Course figure (normal iff score < threshold): accuracy {m['course']['accuracy']:.4f}.",
        "",
    ]
    if "per_class" in m:
        lines += ["| ECG5000 class | beats | alerted |", "| --- | --- | --- |"]
        lines += [
            f"| {k} {v['name']} | {v['n']} | {v['detection_rate']:.3f} |"
            for k, v in m["per_class"].items()
        ]
        lines.append("")
    lines += [
        "Plots: `loss.png`, `errors.png`, `roc_pr.png`, `examples.png`.",
        "",
    ]
    return "\n".join(lines)
