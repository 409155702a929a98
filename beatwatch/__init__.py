"""beatwatch: streaming ECG anomaly detection.

The shared contract of the system lives here: the wire format of beats and
alerts, the model artifact, the scoring math, settings, metrics and the
embedded broker. The programs (`producer`, `detector`, `trainer`) import this
package and never each other.
"""

import os

__version__ = "0.1.0"

# TensorFlow's C++ start-up banner (CPU features, oneDNN notes) is noise in
# service logs; errors still show. Must be set before TensorFlow is imported.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
