"""A small HTTP endpoint for Prometheus scrapes and health checks.

Serves ``/metrics`` (the process's own registry), ``/ready`` (200 when the
program says it is ready, else 503) and ``/healthz`` (200 while the process
runs). prometheus_client's ``start_http_server`` has no readiness route,
which orchestrators and the demo need.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from beatwatch.errors import ConfigError

log = logging.getLogger(__name__)


class MetricsServer:
    """Serve metrics and health on ``host:port`` from a daemon thread.

    Args:
        registry: the registry to expose.
        port: TCP port; 0 picks a free one (see ``port`` after ``start``).
        host: listen address.
        ready: returns True when the program is ready to work.
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        port: int,
        *,
        host: str = "0.0.0.0",
        ready: Callable[[], bool] = lambda: True,
    ) -> None:
        self._registry = registry
        self._ready = ready
        server_self = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?")[0]
                if path == "/metrics":
                    self._send(200, generate_latest(server_self._registry), CONTENT_TYPE_LATEST)
                elif path == "/ready":
                    ok = server_self._ready()
                    self._send(200 if ok else 503, b"ready\n" if ok else b"not ready\n")
                elif path == "/healthz":
                    self._send(200, b"ok\n")
                else:
                    self._send(404, b"not found: try /metrics, /ready, /healthz\n")

            def _send(self, code: int, body: bytes, content_type: str = "text/plain") -> None:
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass  # scrapes every few seconds would flood the log

        try:
            self._server = ThreadingHTTPServer((host, port), Handler)
        except (OSError, OverflowError) as exc:  # in use, privileged, unknown host
            reason = getattr(exc, "strerror", None) or exc
            raise ConfigError(f"metrics endpoint {host}:{port}: cannot listen ({reason})") from None
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="metrics-http", daemon=True
        )

    def start(self) -> MetricsServer:
        """Start serving in the background."""
        self._thread.start()
        log.info("metrics on http://127.0.0.1:%d/metrics", self.port)
        return self

    def stop(self) -> None:
        """Stop serving and release the port."""
        self._server.shutdown()
        self._server.server_close()
