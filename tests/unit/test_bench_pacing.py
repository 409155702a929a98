"""Progress scrapes of a draining detector are dense only where the clock is read."""

from __future__ import annotations

import time

from beatwatch.tools.bench import COARSE_SCRAPE_S, FINE_SCRAPE_S, next_scrape_s


def test_scrapes_are_fine_until_the_clock_starts() -> None:
    assert next_scrape_s(None, 0, 60_000) == FINE_SCRAPE_S
    assert next_scrape_s((time.perf_counter(), 500), 500, 60_000) == FINE_SCRAPE_S


def test_scrapes_are_coarse_mid_run_and_fine_near_the_end() -> None:
    one_second_ago = (time.perf_counter() - 1.0, 0.0)  # about 10,000 beats/s so far
    assert next_scrape_s(one_second_ago, 10_000, 60_000) == COARSE_SCRAPE_S
    halfway = next_scrape_s(one_second_ago, 10_000, 14_000)  # ~0.4 s left: wait ~0.2 s
    assert FINE_SCRAPE_S < halfway < COARSE_SCRAPE_S
    assert next_scrape_s(one_second_ago, 59_950, 60_000) == FINE_SCRAPE_S
    assert next_scrape_s(one_second_ago, 70_000, 60_000) == FINE_SCRAPE_S
