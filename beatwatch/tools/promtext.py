"""Read a Prometheus text exposition: sample values and histogram quantiles.

Used by the demo's live view and by tests that scrape a real endpoint.
"""

from __future__ import annotations

import math
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(url: str, timeout_s: float = 2.0) -> Samples:
    """Fetch ``url`` and return ``{(sample name, sorted labels): value}``."""
    with urllib.request.urlopen(url, timeout=timeout_s) as response:
        text = response.read().decode()
    return parse(text)


def parse(text: str) -> Samples:
    """Parse exposition text into ``{(sample name, sorted labels): value}``."""
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    """The value of one sample, 0.0 when absent."""
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def total(samples: Samples, name: str) -> float:
    """Sum of a sample over all its label sets."""
    return sum(v for (n, _), v in samples.items() if n == name)


def histogram_quantile(samples: Samples, name: str, q: float) -> float:
    """Estimate quantile ``q`` of histogram ``name`` as PromQL's histogram_quantile does.

    Returns NaN when the histogram is empty.
    """
    buckets = sorted(
        (float(dict(labels)["le"]), count)
        for (sample, labels), count in samples.items()
        if sample == f"{name}_bucket"
    )
    if not buckets or buckets[-1][1] == 0:
        return math.nan
    rank = q * buckets[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return lower_bound
            fraction = (rank - lower_count) / (count - lower_count) if count > lower_count else 0
            return lower_bound + (bound - lower_bound) * fraction
        lower_bound, lower_count = bound, count
    return lower_bound
