"""Steady pacing: the n-th beat leaves at ``start + n / rate``, not ``previous + 1 / rate``.

Scheduling against the start time keeps the average rate exact however long
each send takes (errors do not accumulate), and a producer that fell behind
catches up instead of drifting.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class Pacer:
    """Waits until the next beat is due.

    Args:
        rate_hz: beats per second; 0 means as fast as possible.
        clock: monotonic seconds.
        sleep: sleeps for seconds.
        max_sleep_s: longest single sleep, so a stop request is seen promptly.
    """

    def __init__(
        self,
        rate_hz: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        max_sleep_s: float = 0.1,
    ) -> None:
        if rate_hz < 0:
            raise ValueError(f"rate must be >= 0, got {rate_hz}")
        self.rate_hz = rate_hz
        self._clock = clock
        self._sleep = sleep
        self._max_sleep_s = max_sleep_s
        self._start = clock()
        self._sent = 0

    def wait(self, stopping: Callable[[], bool] = lambda: False) -> bool:
        """Wait until the next beat is due (not at all when unpaced or behind).

        Args:
            stopping: checked between sleeps; a stop request ends the wait.

        Returns:
            True when the beat is due and counted as released, False when
            ``stopping`` ended the wait first.
        """
        if self.rate_hz > 0:
            due = self._start + self._sent / self.rate_hz
            while (delay := due - self._clock()) > 0:
                if stopping():
                    return False
                self._sleep(min(delay, self._max_sleep_s))
        self._sent += 1
        return True

    @property
    def sent(self) -> int:
        """Beats released so far."""
        return self._sent
