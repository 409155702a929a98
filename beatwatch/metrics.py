"""Prometheus metrics of the producer and the detector.

Naming follows Prometheus conventions: the ``beatwatch_`` prefix, ``_total``
counters, ``_seconds`` histograms in base units, and no per-stream or per-beat
labels (stream ids may identify patients; labels are bounded: ``reason``,
``partition``). Each metrics object takes a registry, so tests use a
fresh ``CollectorRegistry`` each and processes use their own.

The names here are a contract: ``deploy/`` rules and the Grafana dashboard use
them, and a test checks that every name they use is exported.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.core import HistogramMetricFamily, Metric, SummaryMetricFamily
from prometheus_client.registry import Collector

from beatwatch.drift import DEFAULT_WINDOW_BEATS, ScoreDrift, ScoreDriftCollector

# Reconstruction error is recorded as a ratio to the model's threshold, so the
# buckets fit every model and 1.0 is the alert line.
ERROR_RATIO_BUCKETS = (
    0.05,
    0.1,
    0.2,
    0.3,
    0.4,
    0.5,
    0.6,
    0.7,
    0.8,
    0.9,
    1.0,
    1.25,
    1.5,
    2.0,
    3.0,
    5.0,
    10.0,
    20.0,
)
LATENCY_BUCKETS_SECONDS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)
SCORING_BUCKETS_SECONDS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
)
# Why a new model version was refused (labels of beatwatch_model_refusals_total):
# CURRENT unreadable or malformed, artifact checks failed, another beat length
# than the running model, Keras could not load or run it.
MODEL_REFUSAL_REASONS = ("pointer", "artifact", "input_length", "load")
BATCH_BUCKETS_BEATS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2000, 5000)


def _bucket_label(bound: float) -> str:
    """Format a bucket bound as Prometheus does: ``+Inf``, ``0.05``, ``1.0``."""
    return "+Inf" if bound == float("inf") else repr(bound)


class BatchHistogram(Collector):
    """A histogram observed a whole batch at a time, with numpy.

    ``prometheus_client.Histogram.observe`` costs a Python call and a lock per
    value; per-beat histograms at 100k beats/s would spend more time there than
    in the model. This one bins a batch with one ``searchsorted`` and exposes
    the same histogram series.
    """

    def __init__(
        self, name: str, documentation: str, buckets: Sequence[float], registry: CollectorRegistry
    ) -> None:
        self._name = name
        self._documentation = documentation
        self._upper_bounds = np.array([*buckets, float("inf")], dtype=np.float64)
        self._counts = np.zeros(len(self._upper_bounds), dtype=np.int64)
        self._sum = 0.0
        self._lock = threading.Lock()
        registry.register(self)

    def observe_many(self, values: np.ndarray) -> None:
        """Add every value of ``values`` (1-D) to the histogram."""
        if values.size == 0:
            return
        # A value equal to a bound belongs to that bucket (le = "less or equal").
        index = np.searchsorted(self._upper_bounds, values, side="left")
        counts = np.bincount(index, minlength=len(self._upper_bounds))
        with self._lock:
            self._counts += counts[: len(self._upper_bounds)]
            self._sum += float(values.sum())

    def collect(self) -> Iterator[Metric]:
        """Expose cumulative buckets, count and sum."""
        with self._lock:
            cumulative = np.cumsum(self._counts)
            total = self._sum
        family = HistogramMetricFamily(
            self._name,
            self._documentation,
            buckets=[
                (_bucket_label(float(bound)), float(count))
                for bound, count in zip(self._upper_bounds, cumulative, strict=True)
            ],
            sum_value=total,
        )
        yield family


class CalibrationSummary(Collector):
    """The artifact's calibration errors as a summary: quantiles, count and sum.

    A quantile label is only valid on a summary (``promtool check metrics``), so
    the fixed distribution the model was calibrated on is exposed as one, on the
    same ratio-to-threshold scale as ``beatwatch_reconstruction_error_ratio``.
    """

    QUANTILES = (0.5, 0.9, 0.99)

    def __init__(self, name: str, documentation: str, registry: CollectorRegistry) -> None:
        self._name = name
        self._documentation = documentation
        self._ratios: np.ndarray | None = None
        registry.register(self)

    def set_errors(self, errors: np.ndarray, threshold: float) -> None:
        """Record the calibration errors (raw scores) of the loaded model."""
        self._ratios = np.asarray(errors, dtype=np.float64) / threshold

    def collect(self) -> Iterator[Metric]:
        """Expose the quantiles (nothing until a model with calibration errors is loaded)."""
        if self._ratios is None or self._ratios.size == 0:
            return
        family = SummaryMetricFamily(
            self._name,
            self._documentation,
            count_value=self._ratios.size,
            sum_value=float(self._ratios.sum()),
        )
        for q in self.QUANTILES:
            family.add_sample(self._name, {"quantile": str(q)}, float(np.quantile(self._ratios, q)))
        yield family


class DetectorMetrics:
    """Everything the detector exports."""

    def __init__(
        self, registry: CollectorRegistry, drift_window_beats: int = DEFAULT_WINDOW_BEATS
    ) -> None:
        self.beats_consumed = Counter(
            "beatwatch_beats_consumed_total",
            "Messages read from the beats topic, valid or not.",
            registry=registry,
        )
        self.beats_scored = Counter(
            "beatwatch_beats_scored_total", "Beats scored by the model.", registry=registry
        )
        self.alerts = Counter(
            "beatwatch_alerts_total",
            "Alerts published (beats whose reconstruction error exceeded the threshold).",
            registry=registry,
        )
        self.invalid_beats = Counter(
            "beatwatch_invalid_beats_total",
            "Messages refused and sent to the dead-letter topic, by reason"
            " (unscorable: after the model call).",
            ["reason"],
            registry=registry,
        )
        self.dead_letters = Counter(
            "beatwatch_dead_letters_total",
            "Records published to the dead-letter topic.",
            registry=registry,
        )
        self.reconstruction_error_ratio = BatchHistogram(
            "beatwatch_reconstruction_error_ratio",
            "Reconstruction error of scored beats divided by the model threshold (>1 alerts).",
            ERROR_RATIO_BUCKETS,
            registry,
        )
        self.batch_size = Histogram(
            "beatwatch_batch_size_beats",
            "Beats scored per model call.",
            buckets=BATCH_BUCKETS_BEATS,
            registry=registry,
        )
        self.scoring_seconds = Histogram(
            "beatwatch_scoring_seconds",
            "Time of one batched model call.",
            buckets=SCORING_BUCKETS_SECONDS,
            registry=registry,
        )
        self.batch_seconds = Histogram(
            "beatwatch_batch_seconds",
            "Time to process one polled batch: decode, score, alert, flush, commit.",
            buckets=LATENCY_BUCKETS_SECONDS,
            registry=registry,
        )
        self.end_to_end_latency = BatchHistogram(
            "beatwatch_end_to_end_latency_seconds",
            "Time from the beat's ts_ms to the detector taking up its polled batch"
            " (the alert's detected_ts_ms).",
            LATENCY_BUCKETS_SECONDS,
            registry,
        )
        self.consumer_lag = Gauge(
            "beatwatch_consumer_lag_messages",
            "Messages behind the partition's high watermark, per assigned partition.",
            ["partition"],
            registry=registry,
        )
        self.assigned_partitions = Gauge(
            "beatwatch_assigned_partitions",
            "Partitions of the beats topic assigned to this detector.",
            registry=registry,
        )
        self.commits = Counter(
            "beatwatch_commits_total", "Offset commits that succeeded.", registry=registry
        )
        self.commit_failures = Counter(
            "beatwatch_commit_failures_total",
            "Offset commits that failed (the batch will be redelivered).",
            registry=registry,
        )
        self.broker_errors = Counter(
            "beatwatch_broker_errors_total",
            "Errors talking to the broker that the detector retried.",
            registry=registry,
        )
        self.ready = Gauge(
            "beatwatch_ready",
            "1 when the model is loaded, partitions are assigned and the broker answers, else 0.",
            registry=registry,
        )
        self.model_threshold = Gauge(
            "beatwatch_model_threshold",
            "The loaded model's reconstruction-error threshold.",
            registry=registry,
        )
        self.model_calibration_error_ratio = CalibrationSummary(
            "beatwatch_model_calibration_error_ratio",
            "Quantiles of the calibration errors (held-out normal beats) divided by the threshold.",
            registry,
        )
        self.model = Info("beatwatch_model", "The loaded model artifact.", registry=registry)
        self.model_switches = Counter(
            "beatwatch_model_switches_total",
            "Switches to a new model version without a restart (between two batches).",
            registry=registry,
        )
        self.model_refusals = Counter(
            "beatwatch_model_refusals_total",
            "New model versions refused, by reason (pointer, artifact, input_length, load);"
            " the running model stays.",
            ["reason"],
            registry=registry,
        )
        for reason in MODEL_REFUSAL_REASONS:
            self.model_refusals.labels(reason)
        self.score_drift = ScoreDrift(drift_window_beats)
        ScoreDriftCollector(self.score_drift, registry)
        self.incidents_open = Gauge(
            "beatwatch_incidents_open",
            "Incidents open on the streams of this detector's partitions.",
            registry=registry,
        )
        self.incident_events = Counter(
            "beatwatch_incident_events_total",
            "Incident events published, by kind (open, update, close).",
            ["kind"],
            registry=registry,
        )
        for kind in ("open", "update", "close"):
            self.incident_events.labels(kind)
        self.state_restore_seconds = Histogram(
            "beatwatch_state_restore_seconds",
            "Time to rebuild one assigned partition's per-stream state from its changelog.",
            buckets=LATENCY_BUCKETS_SECONDS,
            registry=registry,
        )
        self.state_streams = Gauge(
            "beatwatch_state_streams",
            "Streams whose state this detector holds (its partitions' streams).",
            registry=registry,
        )
        self.state_changelog_records = Counter(
            "beatwatch_state_changelog_records_total",
            "Per-stream state records written to the changelog topic.",
            registry=registry,
        )
        self.state_skipped_records = Counter(
            "beatwatch_state_skipped_records_total",
            "Changelog records that were not state of this format, left out of a rebuild.",
            registry=registry,
        )


class ProducerMetrics:
    """Everything the producer exports."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.beats_sent = Counter(
            "beatwatch_producer_beats_sent_total",
            "Beats acknowledged by the broker.",
            registry=registry,
        )
        self.send_errors = Counter(
            "beatwatch_producer_send_errors_total",
            "Beats the broker did not acknowledge after retries.",
            registry=registry,
        )
        self.target_rate = Gauge(
            "beatwatch_producer_target_rate_beats_per_second",
            "Configured replay rate (0 = as fast as possible).",
            registry=registry,
        )
