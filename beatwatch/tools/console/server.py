"""The console's web server: one page, its static files, a live event stream, a JSON API.

Standard library only (``http.server``): one thread per request, and one per
open page for its server-sent events. The event stream sends the whole live
view (bounded: the most recently active streams) whenever it changed, at most
a few times a second, so a burst of alerts costs a page one update, and no
per-client queue can grow. Read-only: only GET is served. Requests are not
logged (their queries carry stream ids).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson

from beatwatch.tools.console.feed import BeatReader
from beatwatch.tools.console.rescore import Refused, Rescorer
from beatwatch.tools.console.state import Store

log = logging.getLogger(__name__)

STATIC = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}
# At most this many live-view updates per second per page.
UPDATES_PER_S = 4.0
KEEPALIVE_S = 15.0
STREAMS_SHOWN = 200
STRIP_BEATS = 24
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


@dataclass
class Console:
    """What the handlers serve from."""

    store: Store
    reader: BeatReader
    rescorer: Rescorer
    beats_topic: str
    stop: threading.Event

    def alert(self, stream: str, alert_id: str) -> tuple[HTTPStatus, dict[str, Any]]:
        """The detail of one held alert: its beat re-scored, or the reason it cannot be."""
        row = self.store.find_alert(stream, alert_id)
        if row is None:
            return HTTPStatus.NOT_FOUND, {"error": "no such alert held by the console"}
        try:
            self.rescorer.check_version(row)
            if row.topic is not None and row.topic != self.beats_topic:
                raise Refused(
                    f"this alert's beat is on topic {row.topic}, the console reads "
                    f"{self.beats_topic} (see --beats-topic)"
                )
            try:
                record = self.reader.read(self.beats_topic, row.partition, row.offset)
            except Exception as exc:
                reason = f"cannot read the beat now ({type(exc).__name__}); try again"
                raise Refused(reason) from None
            return HTTPStatus.OK, self.rescorer.detail(row, self.rescorer.beat_of(row, record))
        except Refused as exc:
            return HTTPStatus.OK, {"alert": row.to_json(), "refused": str(exc)}

    def strip(self, stream: str) -> tuple[HTTPStatus, dict[str, Any]]:
        """The stream's recent beats from its partition, alerted ones marked."""
        view = self.store.stream(stream)
        if view is None or not view["alerts"]:
            return HTTPStatus.NOT_FOUND, {"error": "no such stream held by the console"}
        newest = view["alerts"][0]
        try:
            records = self.reader.recent(
                self.beats_topic,
                newest["partition"],
                stream.encode(),
                newest["offset"],
                STRIP_BEATS,
            )
            alerted = self.store.alerted_offsets(stream)
            beats = self.rescorer.strip(records, alerted, newest["model_version"])
        except Refused as exc:
            return HTTPStatus.OK, {"stream": stream, "beats": [], "refused": str(exc)}
        except Exception as exc:
            reason = f"cannot read the beats now ({type(exc).__name__}); try again"
            return HTTPStatus.OK, {"stream": stream, "beats": [], "refused": reason}
        return HTTPStatus.OK, {"stream": stream, "beats": beats}


class Handler(BaseHTTPRequestHandler):
    """GET only: the page, static files, ``/events``, ``/api/...``, ``/healthz``."""

    console: Console  # set on the subclass made by make_server
    server_version = "beatwatch-console"
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        """Requests are not logged: their queries name streams."""

    def _send(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in SECURITY_HEADERS.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: HTTPStatus, payload: dict[str, Any]) -> None:
        self._send(status, orjson.dumps(payload), "application/json")

    def do_GET(self) -> None:
        """Route a GET."""
        url = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        console = self.console
        try:
            if url.path in ("/", "/index.html"):
                self._static("index.html")
            elif url.path.startswith("/static/") and url.path[8:] in STATIC:
                self._static(url.path[8:])
            elif url.path == "/events":
                self._events()
            elif url.path == "/healthz":
                self._send(HTTPStatus.OK, b"ok\n", "text/plain")
            elif url.path == "/api/state":
                self._json(HTTPStatus.OK, console.store.snapshot(STREAMS_SHOWN))
            elif url.path == "/api/stream" and "stream" in query:
                view = console.store.stream(query["stream"])
                if view is None:
                    self._json(HTTPStatus.NOT_FOUND, {"error": "no such stream"})
                else:
                    self._json(HTTPStatus.OK, view)
            elif url.path == "/api/alert" and "stream" in query and "id" in query:
                self._json(*console.alert(query["stream"], query["id"]))
            elif url.path == "/api/strip" and "stream" in query:
                self._json(*console.strip(query["stream"]))
            else:
                self._json(HTTPStatus.NOT_FOUND, {"error": "not found"})
        except (BrokenPipeError, ConnectionResetError):
            pass  # the page went away

    def _static(self, name: str) -> None:
        body = (resources.files(__package__ or "") / "static" / name).read_bytes()
        self._send(HTTPStatus.OK, body, STATIC[name])

    def _events(self) -> None:
        """Server-sent events: the live view on connect, then on every change."""
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "text/event-stream")
        for name, value in SECURITY_HEADERS.items():
            self.send_header(name, value)
        self.end_headers()
        self.close_connection = True
        store, stop = self.console.store, self.console.stop
        self.wfile.write(b"retry: 1000\n\n")
        seen = -1
        while not stop.is_set():
            version = store.wait_for_change(seen, KEEPALIVE_S)
            if version == seen:
                self.wfile.write(b": keepalive\n\n")
            else:
                seen = version
                payload = orjson.dumps(store.snapshot(STREAMS_SHOWN))
                self.wfile.write(b"event: state\ndata: " + payload + b"\n\n")
            self.wfile.flush()
            stop.wait(1.0 / UPDATES_PER_S)


class Server(ThreadingHTTPServer):
    """Request threads are daemons: an open event stream never holds up a stop."""

    daemon_threads = True


def make_server(console: Console, host: str, port: int) -> Server:
    """Bind the console's server (``port`` 0 picks a free one).

    Raises:
        OSError: the address cannot be bound.
    """
    handler = type("ConsoleHandler", (Handler,), {"console": console})
    return Server((host, port), handler)
