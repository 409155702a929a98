"""Keep secrets out of log lines: the :class:`SecretRedactor` logging filter.

Its one job is to scrub every secret registered with it (the SASL password,
registered when the security settings are read) from the text of every log
record that passes the handlers it is attached to.
"""

from __future__ import annotations

import logging

REDACTED = "***"


class SecretRedactor(logging.Filter):
    """Replace every registered secret in a log record's text by ``***``.

    Attach it to handlers (not loggers: a logger's filters do not see records
    of its children). kafka-python logs its configuration, credentials
    included, at DEBUG; this keeps ``--log-level DEBUG`` safe too.
    """

    _secrets: set[str] = set()  # noqa: RUF012 - one registry per process, on purpose

    @classmethod
    def register(cls, secret: str) -> None:
        """Scrub ``secret`` from every log line from now on."""
        if secret:
            cls._secrets.add(secret)

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact the record in place; never drops it."""
        if not self._secrets:
            return True
        try:
            text = record.getMessage()
        except Exception:  # a malformed record: leave it to the formatter to report
            return True
        redacted = text
        for secret in self._secrets:
            redacted = redacted.replace(secret, REDACTED)
        if redacted != text:
            record.msg, record.args = redacted, None
        return True
