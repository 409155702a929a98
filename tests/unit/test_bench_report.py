"""The benchmark's table and ratios: kafka-python keys as before, confluent figures beside them."""

from __future__ import annotations

from typing import Any

import pytest

from beatwatch.errors import ConfigError
from beatwatch.tools.bench import (
    LATEST_RUN_MARKER,
    latest_run_text,
    ratios,
    render,
    with_latest_run,
)

LATENCY = {
    "achieved_beats_per_s": 2000.0,
    "alerts": 8000,
    "p50_ms": 20.0,
    "p95_ms": 30.0,
    "p99_ms": 40.0,
    "to_detection_p50_ms": 10.0,
    "to_detection_p99_ms": 30.0,
    "after_detection_p50_ms": 10.0,
    "after_detection_p99_ms": 12.0,
    "machine_share": {},
}
MEMORY = {
    "beats_scored": 1e6,
    "rss_after_warmup_mib": 700.0,
    "rss_final_mib": 701.0,
    "rss_max_mib": 702.0,
    "growth_after_warmup_mib": 1.0,
}


def results() -> dict[str, Any]:
    out: dict[str, Any] = {"c_course_predict_per_beat_beats_per_s": 25.0}
    for prefix, scale in (("", 1.0), ("confluent.", 3.0)):
        for case in ("json", "binary"):
            out[f"{prefix}a_ceiling_{case}_beats_per_s"] = 60_000.0 * scale
            out[f"{prefix}a2_ceiling_publishing_{case}_beats_per_s"] = 40_000.0 * scale
            out[f"{prefix}b_detector_{case}_beats_per_s"] = 32_000.0 * scale
        out[f"{prefix}e_latency_2000hz"] = LATENCY
        out[f"{prefix}g_memory"] = MEMORY
    out["confluent.e_latency_10000hz"] = {**LATENCY, "p99_ms": 90.0}
    return out


def test_ratios_compare_each_client_to_its_ceiling_and_the_clients_to_each_other() -> None:
    got = ratios(results())
    assert got["(b)/(a') binary, ECG5000 (42% alert)"] == 0.8
    assert got["confluent (b)/(a') binary, ECG5000 (42% alert)"] == 0.8
    assert got["(b) confluent / kafka-python, binary, ECG5000 (42% alert)"] == 3.0
    assert got["(b)/(c) JSON, ECG5000 (42% alert)"] == 32_000 / 25
    assert got["confluent (b)/(c) JSON, ECG5000 (42% alert)"] == 96_000 / 25


def test_the_table_names_the_client_of_every_confluent_figure() -> None:
    table = render(results())
    assert "confluent (b) detector drain, binary, ECG5000 (42% alert)" in table
    assert "(e) confluent produce->alert latency at 10000hz" in table
    assert "p99   90.0 ms" in table
    assert "(e) produce->alert latency at 2000hz" in table
    assert "(g) confluent detector RSS" in table and "(g) detector RSS" in table


def test_without_confluent_figures_the_table_is_kafka_pythons_alone() -> None:
    only = {k: v for k, v in results().items() if not k.startswith("confluent.")}
    assert "confluent" not in render(only)
    assert not any("confluent" in name for name in ratios(only))


DOC = f"""# Performance

## Latest full run

{LATEST_RUN_MARKER}
Old paragraph.

```
old table
```

Read against the targets: kept.
"""


def test_the_latest_run_replaces_only_its_own_block() -> None:
    run = latest_run_text(
        "beatwatch bench", {"cores": 2, "cpu": "AMD EPYC", "python": "3.11.7"}, 0.5, 1.8, "new"
    )
    written = with_latest_run(DOC, run)
    assert "old table" not in written and "Old paragraph" not in written
    assert "```\nnew\n```" in written
    assert "load average 0.5 before the run and 1.8 after it" in written
    assert written.startswith("# Performance\n\n## Latest full run\n\n" + LATEST_RUN_MARKER)
    assert written.endswith("```\n\nRead against the targets: kept.\n")
    assert with_latest_run(written, run) == written  # a second run replaces the first


def test_a_document_without_the_block_is_refused() -> None:
    with pytest.raises(ConfigError, match="followed by a fenced block"):
        with_latest_run("# Performance\n", "new")
    with pytest.raises(ConfigError):
        with_latest_run(LATEST_RUN_MARKER + "\nno fence\n", "new")
