"""The console's web server over a real socket: read-only, safe headers, the live event stream."""

from __future__ import annotations

import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from beatwatch.kafka import KafkaSettings
from beatwatch.tools.broker import free_port
from beatwatch.tools.console.feed import BeatReader
from beatwatch.tools.console.rescore import Rescorer
from beatwatch.tools.console.server import Console, make_server
from beatwatch.tools.console.state import Store, parse_alert

MODEL_DIR = Path(__file__).resolve().parents[2] / "models" / "ecg5000"


@pytest.fixture
def console() -> Iterator[tuple[str, Store]]:
    store = Store()
    rescorer = Rescorer(MODEL_DIR)  # the model itself is never loaded here
    # No broker listens there: the reader refuses at once.
    reader = BeatReader(KafkaSettings(bootstrap_servers=f"127.0.0.1:{free_port()}"))
    stop = threading.Event()
    server = make_server(Console(store, reader, rescorer, "ecg-beats", stop), "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", store
    finally:
        stop.set()
        server.shutdown()
        server.server_close()


def get(url: str) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def add_alert(store: Store, stream: str, model_version: str) -> str:
    body = {
        "alert_id": f"{stream}/3/{model_version}",
        "stream": stream,
        "seq": 3,
        "ts_ms": 1,
        "detected_ts_ms": 2,
        "score": 0.5,
        "threshold": 0.25,
        "model_version": model_version,
        "topic": "ecg-beats",
        "partition": 0,
        "offset": 3,
        "explanation": {"summary": "", "worst_ranges": [], "regions": []},
    }
    row = parse_alert(orjson.dumps(body))
    store.add_alert(row)
    return row.alert_id


def test_the_page_and_its_files_are_served_with_a_strict_content_policy(console):
    url, _ = console
    status, headers, body = get(url + "/")
    assert status == 200 and b"beatwatch console" in body
    assert headers["Content-Security-Policy"].startswith("default-src 'self'")
    assert headers["X-Content-Type-Options"] == "nosniff"
    for name in ("app.js", "style.css"):
        assert get(f"{url}/static/{name}")[0] == 200
    assert get(url + "/static/../server.py")[0] == 404
    assert get(url + "/api/nothing")[0] == 404


def test_it_is_read_only(console):
    url, _ = console
    for method in ("POST", "PUT", "DELETE"):
        request = urllib.request.Request(url + "/api/state", data=b"{}", method=method)
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=5)
        assert refused.value.code == 501


def test_an_alert_is_refused_with_a_reason_when_it_cannot_be_rescored(console):
    url, store = console
    other = add_alert(store, "p-1", "another-model")
    status, _, body = get(f"{url}/api/alert?stream=p-1&id={urllib.parse.quote(other)}")
    assert status == 200 and "another-model" in orjson.loads(body)["refused"]
    same = add_alert(store, "p-2", Rescorer(MODEL_DIR).model_version)
    status, _, body = get(f"{url}/api/alert?stream=p-2&id={urllib.parse.quote(same)}")
    assert status == 200 and "cannot read the beat now" in orjson.loads(body)["refused"]
    assert get(f"{url}/api/alert?stream=p-9&id=x")[0] == 404


def test_the_event_stream_sends_the_live_view_and_its_changes(console):
    url, store = console
    with urllib.request.urlopen(url + "/events", timeout=5) as events:
        assert events.headers["Content-Type"] == "text/event-stream"
        assert events.readline() == b"retry: 1000\n"
        events.readline()
        assert events.readline() == b"event: state\n"
        first = orjson.loads(events.readline().removeprefix(b"data: "))
        assert first["streams"] == []
        add_alert(store, "p-1", "m")
        events.readline()
        assert events.readline() == b"event: state\n"
        second = orjson.loads(events.readline().removeprefix(b"data: "))
        assert [s["stream"] for s in second["streams"]] == ["p-1"]


def test_a_model_root_rescores_each_alert_with_the_version_it_names(tmp_path):
    from beatwatch.model_store import publish
    from beatwatch.tools.console.rescore import Refused
    from tests.support.faults import all_alert_artifact

    root = tmp_path / "root"
    shipped = publish(MODEL_DIR, root)
    other = publish(all_alert_artifact(tmp_path / "other"), root, switch=False)
    rescorer = Rescorer(root)
    assert rescorer.model_version == shipped.model_version  # the current one
    assert rescorer.artifact_for(other.model_version).threshold == other.threshold
    for unknown in ("ecg5000-000000000000", "../versions/" + other.model_version, "."):
        with pytest.raises(Refused, match="has no version"):
            rescorer.artifact_for(unknown)
    with pytest.raises(Refused, match=f"the console has {shipped.model_version}"):
        Rescorer(MODEL_DIR).artifact_for(other.model_version)
