"""The one polling loop of the tests: wait for a condition, or fail saying what was awaited."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(
    condition: Callable[[], T],
    timeout_s: float,
    what: str,
    *,
    interval_s: float = 0.1,
    check: Callable[[], object] | None = None,
    context: Callable[[], str] | None = None,
) -> T:
    """Poll ``condition`` until it returns something truthy, and return that.

    Args:
        condition: what to wait for; its truthy result is returned.
        timeout_s: how long to wait before failing.
        what: what is awaited, for the failure message.
        interval_s: the pause between two polls.
        check: called before each poll; raises to stop early (a process died).
        context: text added to the failure message (logs).

    Raises:
        AssertionError: ``timeout_s`` passed first.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        if check is not None:
            check()
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            extra = f"\n{context()}" if context is not None else ""
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}{extra}")
        time.sleep(interval_s)
