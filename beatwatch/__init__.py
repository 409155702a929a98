"""beatwatch: streaming ECG anomaly detection.

The shared contract of the system lives here: the wire format of beats and
alerts, the model artifact, the scoring math, settings, metrics and the
embedded broker. The programs (`producer`, `detector`, `trainer`) import this
package and never each other.
"""

__version__ = "0.1.0"
