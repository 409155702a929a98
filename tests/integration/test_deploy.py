"""The deployment, checked with the real tools and the running programs.

Without a Docker engine, the compose file is validated by Debian's
``docker-compose config``; Prometheus's config, rules and rule unit tests by
``promtool``. Then a detector and a producer run as subprocesses of the CLI
against the test broker: every metric the rules and the dashboard name must be
on their live ``/metrics``, the live exposition must pass ``promtool check
metrics``, and a real Prometheus, configured from ``deploy/prometheus.yml`` with
the real rules, scrapes them and answers a PromQL query with the number of
beats the detector scored.

A missing tool fails the test under CI (``CI=true``) and skips it elsewhere.
"""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]
from prometheus_client.parser import text_string_to_metric_families

from beatwatch.tools.broker import free_port
from tests.support import waiting
from tests.support.commands import BEATWATCH, Background, child_env
from tests.support.deploy import (
    DEPLOY,
    RULES,
    RULES_TEST,
    SYNTHETIC_METRICS,
    dashboard_exprs,
    exported_names,
    promql_metric_names,
    require_tool,
    rules,
    run_tool,
)
from tests.support.kubernetes import KUBERNETES, load_yaml_docs
from tests.support.paths import MODEL_DIR

pytestmark = pytest.mark.integration

PROMETHEUS_CONFIG = DEPLOY / "prometheus.yml"
# The shipped model; BEATWATCH_TEST_MODEL points the live tests at another artifact.
MODEL = MODEL_DIR
BEATS_FED = 300  # beats the producer sends to the detector under test
STARTUP_TIMEOUT_S = 180.0
# Grafana's interval variables, replaced by a duration so promtool can parse the query.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "1m", "$__range": "1h"}


def rule_exprs() -> list[str]:
    """Every expression of the rules file."""
    return [rule["expr"] for rule in rules()]


def sample_value(exposition: str, name: str) -> float:
    """Sum of the samples called ``name`` (0 when absent)."""
    return sum(
        sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
        if sample.name == name
    )


def http_get(url: str, timeout_s: float = 3.0) -> tuple[int, str]:
    """GET ``url``; return status and body (HTTP errors are returned, not raised)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def start(name: str, args: list[str], log_dir: Path) -> Background:
    """Start a command with its output in ``log_dir/name.log``; no BEATWATCH_* leaks in."""
    return Background(name, args, log_dir / f"{name}.log", env=child_env())


def wait_for(
    what: str, condition: Any, processes: list[Background], timeout_s: float = STARTUP_TIMEOUT_S
) -> Any:
    """Poll ``condition()`` until truthy; fail (with logs) on timeout or a dead process."""

    def all_alive() -> None:
        for process in processes:
            process.check_alive()

    return waiting.wait_for(
        condition,
        timeout_s,
        what,
        interval_s=0.5,
        check=all_alive,
        context=lambda: "\n".join(process.tail() for process in processes),
    )


@dataclass
class Stack:
    """The running programs under test."""

    detector: Background
    detector_url: str
    producer: Background
    producer_url: str
    beats_fed: int
    log_dir: Path


@pytest.fixture(scope="module")
def stack(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A detector fed ``BEATS_FED`` beats and one bad message, and a live producer."""
    assert MODEL.is_dir(), f"the shipped model {MODEL} is missing"
    log_dir = tmp_path_factory.mktemp("deploy-live")
    prefix = f"deploy{uuid.uuid4().hex[:8]}"
    beats, alerts, dlq = f"{prefix}-beats", f"{prefix}-alerts", f"{prefix}-dlq"
    detector_port, producer_port = free_port(), free_port()
    processes: list[Background] = []
    try:
        detector = start(
            "detector",
            [
                *BEATWATCH,
                "detect",
                "--bootstrap-servers",
                kafka_bootstrap,
                "--model",
                str(MODEL),
                "--metrics-port",
                str(detector_port),
                "--metrics-host",
                "127.0.0.1",
                "--beats-topic",
                beats,
                "--alerts-topic",
                alerts,
                "--dlq-topic",
                dlq,
                "--group-id",
                f"{prefix}-detector",
                "--session-timeout-ms",
                "6000",
            ],
            log_dir,
        )
        processes.append(detector)
        detector_url = f"http://127.0.0.1:{detector_port}"
        wait_for(
            "detector /ready",
            lambda: (
                http_get(f"{detector_url}/ready")[0] == 200 if _port_open(detector_port) else False
            ),
            processes,
        )

        feeder = start(
            "producer-feed",
            [
                *BEATWATCH,
                "produce",
                "--bootstrap-servers",
                kafka_bootstrap,
                "--beats-topic",
                beats,
                "--limit",
                str(BEATS_FED),
                "--rate",
                "0",
                "--streams",
                "8",
                "--metrics-port",
                "-1",
                "--progress-interval-s",
                "0",
            ],
            log_dir,
        )
        code = feeder.popen.wait(timeout=STARTUP_TIMEOUT_S)
        assert code == 0, feeder.tail()
        _send_raw(kafka_bootstrap, beats, b"this is not a beat")

        def detector_done() -> bool:
            status, text = http_get(f"{detector_url}/metrics")
            return (
                status == 200
                and sample_value(text, "beatwatch_beats_scored_total") >= BEATS_FED
                and sample_value(text, "beatwatch_dead_letters_total") >= 1
            )

        wait_for(f"{BEATS_FED} beats scored and 1 dead letter", detector_done, processes)

        # A producer that keeps running (its own topic, nobody consumes it), to scrape.
        producer = start(
            "producer",
            [
                *BEATWATCH,
                "produce",
                "--bootstrap-servers",
                kafka_bootstrap,
                "--beats-topic",
                f"{prefix}-idle",
                "--rate",
                "20",
                "--loop",
                "--streams",
                "4",
                "--metrics-port",
                str(producer_port),
                "--progress-interval-s",
                "0",
            ],
            log_dir,
        )
        processes.append(producer)
        producer_url = f"http://127.0.0.1:{producer_port}"

        def producer_sending() -> bool:
            if not _port_open(producer_port):
                return False
            status, text = http_get(f"{producer_url}/metrics")
            return status == 200 and sample_value(text, "beatwatch_producer_beats_sent_total") > 0

        wait_for("producer metrics", producer_sending, processes)
        yield Stack(detector, detector_url, producer, producer_url, BEATS_FED, log_dir)
    finally:
        for process in reversed(processes):
            process.stop()


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _send_raw(bootstrap: str, topic: str, value: bytes) -> None:
    """Send bytes that are no beat, so the dead-letter metrics get a ``reason``."""
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap.split(","))
    producer.send(topic, key=b"deploy-test", value=value).get(timeout=30)
    producer.close()


# --- files, with the real tools ------------------------------------------------------


def test_docker_compose_config_accepts_the_file():
    docker_compose = require_tool("docker-compose")
    for extra in ([], ["--profile", "train"]):
        result = run_tool(docker_compose, "-f", "docker-compose.yml", *extra, "config", "-q")
        assert result.returncode == 0, result.stderr
    result = run_tool(docker_compose, "-f", "docker-compose.yml", "--profile", "train", "config")
    assert result.returncode == 0, result.stderr
    resolved = yaml.safe_load(result.stdout)
    assert resolved["services"]["detector"]["environment"]["BEATWATCH_PARTITIONS"] == "4"
    assert "trainer" in resolved["services"]


def test_promtool_check_config():
    result = run_tool(require_tool("promtool"), "check", "config", str(PROMETHEUS_CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 rule files found" in result.stdout


def test_promtool_check_rules():
    result = run_tool(require_tool("promtool"), "check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_test_rules_each_alert_fires_and_stays_quiet():
    result = run_tool(require_tool("promtool"), "test", "rules", str(RULES_TEST))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_dashboard_query_is_valid_promql(tmp_path):
    promtool = require_tool("promtool")
    exprs = []
    for expr in dashboard_exprs():
        for variable, value in GRAFANA_VARIABLES.items():
            expr = expr.replace(variable, value)
        assert "$" not in expr, f"unknown Grafana variable in {expr}"
        exprs.append(expr)
    rules = [{"record": f"dashboard:query_{i}:check", "expr": e} for i, e in enumerate(exprs)]
    path = tmp_path / "dashboard.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = run_tool(promtool, "check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(exprs)} rules found" in result.stdout


# --- live programs -------------------------------------------------------------------


def test_every_metric_in_rules_and_dashboard_is_exported_live(stack):
    exported = set(SYNTHETIC_METRICS)
    for url in (stack.detector_url, stack.producer_url):
        status, text = http_get(f"{url}/metrics")
        assert status == 200
        exported |= exported_names(text)
    used = set().union(*(promql_metric_names(e) for e in [*rule_exprs(), *dashboard_exprs()]))
    assert used - exported == set(), "named in deploy/ but not exported by a live program"
    # The Kubernetes PrometheusRule (a copy of the rules file, checked offline too).
    (rule,) = load_yaml_docs(KUBERNETES / "base" / "prometheusrule.yaml")
    kubernetes = {
        name
        for group in rule["spec"]["groups"]
        for r in group["rules"]
        for name in promql_metric_names(str(r["expr"]))
    }
    assert kubernetes and kubernetes - exported == set(), "PrometheusRule names unexported metrics"
    status, text = http_get(f"{stack.detector_url}/metrics")
    reasons = {
        sample.labels.get("reason")
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "beatwatch_invalid_beats_total"
    }
    assert reasons - {None}, "the bad message was dead-lettered with a reason"


def test_live_endpoints_pass_promtool_check_metrics(stack):
    promtool = require_tool("promtool")
    for url in (stack.detector_url, stack.producer_url):
        status, text = http_get(f"{url}/metrics")
        assert status == 200
        result = run_tool(promtool, "check", "metrics", stdin=text)
        assert result.returncode == 0, f"{url}: {result.stdout}{result.stderr}"


def test_detector_health_endpoints(stack):
    assert http_get(f"{stack.detector_url}/healthz")[0] == 200
    assert http_get(f"{stack.detector_url}/ready")[0] == 200
    # The Kubernetes detector's probes ask the live detector what they would ask a pod.
    (deployment,) = load_yaml_docs(KUBERNETES / "base" / "detector-deployment.yaml")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        path = container[probe]["httpGet"]["path"]
        assert http_get(f"{stack.detector_url}{path}")[0] == 200, f"{probe} {path}"


def _prometheus_config(detector: str, producer: str, own: str) -> dict[str, Any]:
    """deploy/prometheus.yml with Docker DNS discovery replaced by the test's addresses."""
    config: dict[str, Any] = yaml.safe_load(PROMETHEUS_CONFIG.read_text(encoding="utf-8"))
    config["global"]["scrape_interval"] = "1s"
    config["global"]["scrape_timeout"] = "1s"
    config["global"]["evaluation_interval"] = "1s"
    config["rule_files"] = [
        str((PROMETHEUS_CONFIG.parent / f).resolve()) for f in config["rule_files"]
    ]
    targets = {"detector": detector, "producer": producer, "prometheus": own}
    for job in config["scrape_configs"]:
        job.pop("dns_sd_configs", None)
        job["static_configs"] = [{"targets": [targets[job["job_name"]]]}]
    return config


def _query(base: str, promql: str) -> list[dict[str, Any]]:
    url = f"{base}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
    status, body = http_get(url)
    assert status == 200, body
    payload = json.loads(body)
    assert payload["status"] == "success", payload
    result: list[dict[str, Any]] = payload["data"]["result"]
    return result


def test_real_prometheus_scrapes_the_detector_and_counts_scored_beats(stack, tmp_path):
    prometheus_bin = require_tool("prometheus")
    port = free_port()
    detector = stack.detector_url.removeprefix("http://")
    producer = stack.producer_url.removeprefix("http://")
    config = _prometheus_config(detector, producer, f"127.0.0.1:{port}")
    config_path = tmp_path / "prometheus.yml"
    config_path.write_text(yaml.safe_dump(config))
    check = run_tool(require_tool("promtool"), "check", "config", str(config_path))
    assert check.returncode == 0, check.stdout + check.stderr

    server = start(
        "prometheus",
        [
            prometheus_bin,
            f"--config.file={config_path}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stack.log_dir,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(
            "prometheus ready",
            lambda: _port_open(port) and http_get(f"{base}/-/ready")[0] == 200,
            [server],
            60,
        )

        def scored() -> float | None:
            result = _query(base, 'sum(beatwatch_beats_scored_total{job="detector"})')
            return float(result[0]["value"][1]) if result else None

        value = wait_for("beatwatch_beats_scored_total in Prometheus", scored, [server], 60)
        # The detector is idle now: its counter is final (== the beats fed, unless an
        # at-least-once redelivery scored some twice).
        live = sample_value(
            http_get(f"{stack.detector_url}/metrics")[1], "beatwatch_beats_scored_total"
        )
        assert value == live >= stack.beats_fed

        def all_scraped() -> dict[str, str] | None:
            up = {r["metric"]["job"]: r["value"][1] for r in _query(base, "up")}
            return up if len(up) == 3 else None  # each job scraped once at least

        up = wait_for("every job scraped", all_scraped, [server], 30)
        assert up == {"detector": "1", "producer": "1", "prometheus": "1"}

        def rules_evaluated() -> list[dict[str, Any]] | None:
            body = http_get(f"{base}/api/v1/rules")[1]
            groups: list[dict[str, Any]] = json.loads(body)["data"]["groups"]
            rules = [rule for group in groups for rule in group["rules"]]
            evaluated = rules and all(rule["health"] != "unknown" for rule in rules)
            return rules if evaluated else None

        rules = wait_for("rules evaluated", rules_evaluated, [server], 30)
        assert len(rules) == len(rule_exprs())
        broken = {rule["name"]: rule.get("lastError") for rule in rules if rule["health"] != "ok"}
        assert not broken, f"rules failing on the live server: {broken}"
    finally:
        server.stop()
