import argparse
import math
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import generate_latest

from beatwatch.alert import explain, explain_batch
from beatwatch.errors import ConfigError
from beatwatch.kafka import KafkaSettings
from beatwatch.metrics import DetectorMetrics
from beatwatch.settings import add_option, positive_float
from beatwatch.tools import promtext
from beatwatch.tools.alerts import Deduplicator
from detector.service import DetectorSettings
from producer.pacing import Pacer
from producer.source import parse_row_ranges, stream_id


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept = 0.0

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        self.slept += seconds


def test_pacer_releases_the_nth_beat_at_n_over_rate():
    fake = FakeClock()
    pacer = Pacer(200.0, clock=fake.clock, sleep=fake.sleep)
    for _ in range(1001):
        pacer.wait()
    assert fake.now == pytest.approx(5.0)  # beat 1000 is due at 1000/200 s


def test_pacer_catches_up_without_sleeping_when_behind():
    fake = FakeClock()
    pacer = Pacer(100.0, clock=fake.clock, sleep=fake.sleep)
    fake.now = 1.0  # a 1 s stall: 100 beats are overdue
    for _ in range(100):
        pacer.wait()
    assert fake.slept == 0.0


def test_a_stop_request_ends_a_long_wait_within_one_short_sleep():
    fake = FakeClock()
    pacer = Pacer(0.05, clock=fake.clock, sleep=fake.sleep, max_sleep_s=0.1)  # one beat per 20 s
    assert pacer.wait(lambda: False)  # the first beat is due at once
    assert not pacer.wait(lambda: fake.now >= 1.0)  # stop requested 1 s into a 20 s wait
    assert 1.0 <= fake.now <= 1.1 + 1e-9 and pacer.sent == 1  # not the 20 s


def test_unpaced_never_sleeps():
    fake = FakeClock()
    pacer = Pacer(0.0, clock=fake.clock, sleep=fake.sleep)
    for _ in range(10):
        pacer.wait()
    assert fake.slept == 0.0 and pacer.sent == 10


def test_row_ranges():
    assert parse_row_ranges("0-2, 5", 10).tolist() == [0, 1, 2, 5]
    with pytest.raises(ConfigError, match="outside"):
        parse_row_ranges("8-10", 10)
    with pytest.raises(ConfigError, match="cannot read"):
        parse_row_ranges("a-b", 10)


def test_stream_ids_are_synthetic():
    assert stream_id(7) == "p-0007"


def test_worst_ranges_find_the_bump():
    error = np.zeros(140)
    error[30:40] = 1.0
    worst = explain(error, []).worst_ranges[0]
    assert worst.start <= 31 and worst.end >= 39
    assert worst.error_share == 1.0


def test_batch_explanation_equals_one_at_a_time():
    rng = np.random.default_rng(0)
    errors = rng.random((6, 140)) ** 4
    regions = [{"name": "QRS", "start": 0, "end": 15}, {"name": "T", "start": 50, "end": 95}]
    assert explain_batch(errors, regions) == [explain(row, regions) for row in errors]
    smoothed = np.convolve(errors[0], np.ones(5) / 5, mode="same")
    hot = smoothed >= np.quantile(smoothed, 0.9)
    first = explain(errors[0], regions).worst_ranges
    assert all(hot[r.start : r.end].all() for r in first)


def test_explanation_names_the_region_with_most_error():
    error = np.zeros(140)
    error[0:15] = 2.0
    error[60:70] = 0.5
    regions = [{"name": "QRS", "start": 0, "end": 15}, {"name": "T", "start": 50, "end": 95}]
    result = explain(error, regions)
    assert result.regions[0].name == "QRS"
    assert result.regions[0].error_share == pytest.approx(30 / 35, abs=1e-3)
    assert "QRS" in result.summary


def test_batch_histogram_matches_prometheus_semantics(registry):
    metrics = DetectorMetrics(registry)
    metrics.reconstruction_error_ratio.observe_many(np.array([0.05, 0.5, 1.0, 1.01, 100.0]))
    samples = promtext.parse(generate_latest(registry).decode())
    name = "beatwatch_reconstruction_error_ratio"
    assert promtext.value(samples, f"{name}_bucket", le="0.05") == 1
    assert promtext.value(samples, f"{name}_bucket", le="1.0") == 3
    assert promtext.value(samples, f"{name}_bucket", le="1.25") == 4
    assert promtext.value(samples, f"{name}_bucket", le="+Inf") == 5
    assert promtext.value(samples, f"{name}_count") == 5
    assert promtext.value(samples, f"{name}_sum") == pytest.approx(102.56)


def test_histogram_quantile_interpolates_like_promql(registry):
    metrics = DetectorMetrics(registry)
    metrics.end_to_end_latency.observe_many(np.array([0.002] * 50 + [0.02] * 50))
    samples = promtext.parse(generate_latest(registry).decode())
    name = "beatwatch_end_to_end_latency_seconds"
    # 50 of 100 in (0.001, 0.0025]: the median is that bucket's upper bound.
    assert promtext.histogram_quantile(samples, name, 0.5) == pytest.approx(0.0025)
    assert 0.01 < promtext.histogram_quantile(samples, name, 0.99) <= 0.025
    assert math.isnan(promtext.histogram_quantile({}, name, 0.5))


def test_env_variable_sets_default_and_flag_wins(monkeypatch):
    monkeypatch.setenv("BEATWATCH_RATE", "250")
    parser = argparse.ArgumentParser()
    add_option(parser, "--rate", default=100.0, type=positive_float, help="rate")
    assert parser.parse_args([]).rate == 250.0
    assert parser.parse_args(["--rate", "5"]).rate == 5.0
    assert "BEATWATCH_RATE" in parser.format_help()


def test_bad_env_variable_is_a_clear_config_error(monkeypatch):
    monkeypatch.setenv("BEATWATCH_RATE", "fast")
    with pytest.raises(ConfigError, match="BEATWATCH_RATE='fast'"):
        add_option(argparse.ArgumentParser(), "--rate", default=1.0, type=positive_float, help="r")


def test_deduplicator_drops_repeats_within_its_window():
    dedup = Deduplicator(capacity=2)
    assert [dedup.is_new(x) for x in ["a", "b", "a", "c", "a"]] == [True, True, False, True, True]


@pytest.mark.parametrize(
    ("linger_ms", "max_poll_interval_ms", "limit_ms"), [(1001, 300_000, 1000), (501, 1000, 500)]
)
def test_a_batch_linger_past_its_limit_is_a_config_error(linger_ms, max_poll_interval_ms, limit_ms):
    def settings(linger: int) -> DetectorSettings:
        return DetectorSettings(
            kafka=KafkaSettings(bootstrap_servers="127.0.0.1:9092"),
            model_dir=Path("m"),
            batch_linger_ms=linger,
            max_poll_interval_ms=max_poll_interval_ms,
        )

    assert settings(limit_ms).batch_linger_ms == limit_ms
    with pytest.raises(ConfigError, match=f"--batch-linger-ms {linger_ms} is over {limit_ms} ms"):
        settings(linger_ms)
