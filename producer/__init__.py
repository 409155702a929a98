"""The producer: replay heartbeats onto the beats topic.

Beats come from ECG5000 or any CSV of fixed-length vectors (``source``); they
are spread over N patient streams, keyed by stream id with a per-stream
``seq``, paced at a steady rate (``pacing``) and sent as JSON or binary
(``beatwatch.wire``). ``run(settings, stop)`` is the entry point.
"""

from producer.service import ProducerSettings, ProducerStats, run

__all__ = ["ProducerSettings", "ProducerStats", "run"]
