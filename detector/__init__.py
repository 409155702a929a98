"""The detector: consume beats, score them in batches, publish alerts, commit.

A consumer group reads the beats topic; per polled batch it decodes and
validates every record (bad ones go to the dead-letter topic), scores all valid
beats in one compiled model call, publishes an alert for each beat over the
threshold, flushes, and only then commits the batch's offsets
(at-least-once). ``run(settings, stop)`` is the entry point; ``batch`` holds
the pure per-batch logic, ``service`` the Kafka plumbing, ``runner`` the process
around it.
"""

from detector.runner import run
from detector.settings import DetectorSettings

__all__ = ["DetectorSettings", "run"]
