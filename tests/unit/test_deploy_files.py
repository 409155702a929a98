"""Structural checks of the deployment files, with no broker.

The compose file, Dockerfile, Prometheus config, alert rules, their promtool
tests and the Grafana dashboard are read as data and checked against each other
and against the metric names of ``beatwatch.metrics`` (the contract), whose
exposition must also pass ``promtool check metrics``. The docker-compose and
promtool checks of the files and the live-endpoint checks are in
``tests/integration/test_deploy.py``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, generate_latest

from beatwatch.drift import ScoreDrift
from beatwatch.metrics import BatchHistogram, CalibrationSummary, DetectorMetrics, ProducerMetrics
from tests.support.deploy import (
    DASHBOARD,
    DEPLOY,
    REPO,
    RULES,
    RULES_TEST,
    SYNTHETIC_METRICS,
    dashboard_exprs,
    dashboard_panels,
    exported_names,
    load_yaml,
    promql_metric_names,
    require_tool,
    rules,
)

COMPOSE = REPO / "docker-compose.yml"
DOCKERFILE = DEPLOY / "Dockerfile"
PROMETHEUS = DEPLOY / "prometheus.yml"
DATASOURCES = DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
DASHBOARD_PROVIDERS = DEPLOY / "grafana" / "provisioning" / "dashboards" / "beatwatch.yml"
DOCS = REPO / "docs" / "deployment.md"

APP_SERVICES = {"detector": "detect", "producer": "produce", "alerts": "alerts", "trainer": "train"}
# Names Prometheus itself creates for every target.
# What the issue asks of the rules and the dashboard: a phrase each must cover.
REQUIRED_ALERT_METRICS = {
    "detector down": "up",
    "consumer lag growing": "beatwatch_consumer_lag_messages",
    "alert-rate spike": "beatwatch_alerts_total",
    "dead-letter rate": "beatwatch_dead_letters_total",
    "p99 scoring latency": "beatwatch_scoring_seconds_bucket",
    "reconstruction-error drift": "beatwatch_model_calibration_error_ratio",
}
REQUIRED_PANEL_METRICS = {
    "beats/s": "beatwatch_beats_scored_total",
    "consumer lag": "beatwatch_consumer_lag_messages",
    "alerts/s": "beatwatch_alerts_total",
    "dead letters by reason": "beatwatch_invalid_beats_total",
    "latency percentiles": "beatwatch_end_to_end_latency_seconds_bucket",
    "error distribution": "beatwatch_reconstruction_error_ratio_bucket",
    "calibration": "beatwatch_model_calibration_error_ratio",
}


def alert_rules() -> list[dict[str, Any]]:
    """The alerting rules."""
    return [rule for rule in rules() if "alert" in rule]


def _observe_once(metric: object) -> None:
    """Give a metric one sample so every family (labelled ones too) has a series."""
    if isinstance(metric, BatchHistogram):
        metric.observe_many(np.array([0.5]))
        return
    if isinstance(metric, Info):
        metric.info({"model_version": "test-1"})
        return
    if isinstance(metric, CalibrationSummary):
        metric.set_errors(np.array([0.1, 0.2, 0.4]), threshold=0.5)
        return
    if isinstance(metric, ScoreDrift):
        metric.set_reference(np.array([0.1, 0.2, 0.4]))
        metric.observe_many(np.array([0.3]))
        return
    if not isinstance(metric, Counter | Gauge | Histogram):
        return
    labelnames = metric._labelnames
    child: Any = metric.labels(*["0.5"] * len(labelnames)) if labelnames else metric
    if isinstance(metric, Counter):
        child.inc()
    elif isinstance(metric, Gauge):
        child.set(1)
    else:
        child.observe(0.5)


def contract_exposition() -> str:
    """The exposition text of every detector and producer metric, each observed once."""
    registry = CollectorRegistry()
    for metrics in (DetectorMetrics(registry), ProducerMetrics(registry)):
        for value in vars(metrics).values():
            _observe_once(value)
    return generate_latest(registry).decode()


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = load_yaml(COMPOSE)
    return data


# --- metric names: rules and dashboard use only what the programs export ----------


def test_promql_metric_names_ignores_functions_labels_and_durations():
    expr = (
        'histogram_quantile(0.99, sum by (job, le) (rate(foo_bucket{le="1"}[5m]))) > 2 * '
        'max by (job) (bar{quantile="0.5"}) and on (job) baz offset 5m unless 1e3 < up'
    )
    assert promql_metric_names(expr) == {"foo_bucket", "bar", "baz", "up"}


def test_contract_exposition_declares_every_metric_family():
    names = exported_names(contract_exposition())
    assert "beatwatch_invalid_beats_total" in names
    assert "beatwatch_reconstruction_error_ratio_bucket" in names
    assert "beatwatch_model_info" in names
    assert "beatwatch_producer_beats_sent_total" in names


def test_every_metric_in_rules_and_dashboard_is_in_the_metrics_contract():
    exported = exported_names(contract_exposition()) | SYNTHETIC_METRICS
    used: dict[str, str] = {}
    for rule in rules():
        for name in promql_metric_names(rule["expr"]):
            used[name] = f"rule {rule.get('alert', rule.get('record'))}"
    for expr in dashboard_exprs():
        for name in promql_metric_names(expr):
            used.setdefault(name, f"dashboard: {expr}")
    unknown = {name: where for name, where in used.items() if name not in exported}
    assert not unknown, f"not exported by beatwatch.metrics: {unknown}"


@pytest.mark.subprocess
def test_metric_names_pass_promtool_check_metrics():
    promtool = require_tool("promtool")
    result = subprocess.run(
        [promtool, "check", "metrics"],
        input=contract_exposition(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --- alert rules ---------------------------------------------------------------------


def test_rules_cover_what_the_issue_asks():
    used = set().union(*(promql_metric_names(r["expr"]) for r in alert_rules()))
    missing = {what: name for what, name in REQUIRED_ALERT_METRICS.items() if name not in used}
    assert not missing, f"no alert rule for: {missing}"


def test_every_alert_has_severity_summary_description_and_unique_name():
    names = [rule["alert"] for rule in alert_rules()]
    assert len(names) == len(set(names))
    for rule in alert_rules():
        assert rule["alert"].startswith("Beatwatch"), rule["alert"]
        assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        assert rule["annotations"]["description"], rule["alert"]
        assert "for" in rule, f"{rule['alert']} has no 'for' and would fire on one bad scrape"


def test_every_alert_has_a_firing_and_a_quiet_promtool_case():
    spec = load_yaml(RULES_TEST)
    assert spec["rule_files"] == [RULES.name]
    fires: set[str] = set()
    quiet: set[str] = set()
    for case in spec["tests"]:
        for check in case.get("alert_rule_test", []):
            (fires if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = {rule["alert"] for rule in alert_rules()}
    assert names - fires == set(), "alerts never shown to fire"
    assert names - quiet == set(), "alerts never shown to stay quiet"
    assert (fires | quiet) - names == set(), "tests name alerts that do not exist"


# --- Prometheus scrape config -----------------------------------------------------


def test_prometheus_scrapes_every_detector_replica_and_the_producer(compose):
    config = load_yaml(PROMETHEUS)
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    for service, port in (("detector", 9108), ("producer", 9109)):
        (sd,) = jobs[service]["dns_sd_configs"]  # Docker DNS: one A record per replica
        assert sd["names"] == [service] and sd["type"] == "A" and sd["port"] == port
        assert service in compose["services"]
        env = compose["services"][service]["environment"]
        command = {"detector": "DETECT", "producer": "PRODUCE"}[service]
        assert env[f"BEATWATCH_{command}_METRICS_PORT"] == str(port)
        assert str(port) in compose["services"][service]["expose"]
    for rule_file in config["rule_files"]:
        assert (PROMETHEUS.parent / rule_file).resolve() == RULES.resolve()


# --- Grafana ------------------------------------------------------------------------


def test_dashboard_is_well_formed_and_uses_the_provisioned_datasource():
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    (datasource,) = load_yaml(DATASOURCES)["datasources"]
    assert datasource["type"] == "prometheus"
    assert datasource["url"] == "http://prometheus:9090"
    assert dashboard["uid"] and dashboard["title"] and isinstance(dashboard["schemaVersion"], int)
    panels = dashboard_panels()
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["title"] and panel["targets"], panel
        assert panel["datasource"]["uid"] == datasource["uid"], panel["title"]
        ref_ids = [target["refId"] for target in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == datasource["uid"], panel["title"]
            assert promql_metric_names(target["expr"]), f"{panel['title']}: selects nothing"
            assert target["expr"].count("(") == target["expr"].count(")"), target["expr"]


def test_dashboard_shows_what_the_issue_asks():
    used = set().union(*(promql_metric_names(e) for e in dashboard_exprs()))
    missing = {what: name for what, name in REQUIRED_PANEL_METRICS.items() if name not in used}
    assert not missing, f"no panel for: {missing}"
    distribution = [
        p for p in dashboard_panels() if p["title"] == "Reconstruction error vs threshold"
    ]
    (panel,) = distribution
    steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert any(step["value"] == 1 for step in steps), "the alert line (ratio 1.0) is drawn"


def test_dashboard_provider_loads_the_directory_compose_mounts(compose):
    (provider,) = load_yaml(DASHBOARD_PROVIDERS)["providers"]
    mounts = compose["services"]["grafana"]["volumes"]
    assert f"./deploy/grafana/dashboards:{provider['options']['path']}:ro" in mounts
    assert "./deploy/grafana/provisioning:/etc/grafana/provisioning:ro" in mounts


# --- docker-compose -----------------------------------------------------------------


def test_compose_has_every_service(compose):
    assert set(compose["services"]) == {
        "kafka",
        "topics",
        "detector",
        "producer",
        "alerts",
        "trainer",
        "prometheus",
        "grafana",
    }


def test_images_are_pinned_and_kafka_is_official_apache_kraft(compose):
    for name, service in compose["services"].items():
        image = service["image"]
        tag = image.rsplit(":", 1)[-1]
        assert ":" in image and tag != "latest", f"{name}: unpinned image {image}"
    kafka = compose["services"]["kafka"]
    assert re.fullmatch(r"apache/kafka:\d+\.\d+\.\d+", kafka["image"])
    assert kafka["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert kafka["environment"]["KAFKA_CONTROLLER_QUORUM_VOTERS"] == "1@kafka:9093"
    assert not any("zookeeper" in s["image"] for s in compose["services"].values())


def test_detector_scales_without_clashes(compose):
    detector = compose["services"]["detector"]
    assert "container_name" not in detector
    assert "ports" not in detector, "replicas would fight for a host port"
    assert detector["environment"]["BEATWATCH_GROUP_ID"].startswith("${BEATWATCH_GROUP_ID")


def test_only_user_facing_ports_are_published_on_a_configurable_address(compose):
    published = {name for name, s in compose["services"].items() if s.get("ports")}
    assert published == {"kafka", "prometheus", "grafana"}
    for name in published:
        for mapping in compose["services"][name]["ports"]:
            assert mapping.startswith("${BEATWATCH_PUBLISH_ADDRESS:-127.0.0.1}:"), mapping


def test_start_order_waits_for_health_and_topics(compose):
    services = compose["services"]
    for name in ("kafka", "detector", "prometheus", "grafana"):
        assert services[name]["healthcheck"]["test"], name
    assert services["topics"]["depends_on"]["kafka"]["condition"] == "service_healthy"
    for name in ("detector", "producer", "alerts"):
        assert services[name]["depends_on"]["topics"]["condition"] == (
            "service_completed_successfully"
        )
    assert services["producer"]["depends_on"]["detector"]["condition"] == "service_healthy"
    assert services["grafana"]["depends_on"]["prometheus"]["condition"] == "service_healthy"
    assert services["topics"]["environment"]["BEATWATCH_PARTITIONS"] == "${BEATWATCH_PARTITIONS:-4}"
    assert services["topics"]["environment"]["BEATWATCH_REPLICATION_FACTOR"] == (
        "${BEATWATCH_REPLICATION_FACTOR:-1}"
    )
    assert '--replication-factor "$$BEATWATCH_REPLICATION_FACTOR"' in "".join(
        services["topics"]["command"]
    )


def test_trainer_runs_only_on_demand(compose):
    assert compose["services"]["trainer"]["profiles"] == ["train"]
    for name, service in compose["services"].items():
        if name != "trainer":
            assert "profiles" not in service, name


def test_named_volumes_hold_kafka_and_prometheus_data(compose):
    assert {"kafka-data", "prometheus-data"} <= set(compose["volumes"])
    assert "kafka-data:/var/lib/kafka/data" in compose["services"]["kafka"]["volumes"]
    assert "prometheus-data:/prometheus" in compose["services"]["prometheus"]["volumes"]


def test_app_services_are_configured_only_by_environment(compose):
    for name, command in APP_SERVICES.items():
        service = compose["services"][name]
        assert service["command"] == [command], f"{name}: options belong in environment"
        assert "env_file" not in service
        assert all(key.startswith("BEATWATCH_") for key in service["environment"]), name
        assert service["build"]["dockerfile"] == "deploy/Dockerfile"


def test_docs_describe_every_service_and_variable(compose):
    docs = DOCS.read_text(encoding="utf-8")
    for name in compose["services"]:
        assert f"`{name}`" in docs, f"service {name} not described"
    variables = set(re.findall(r"\$\{(\w+)", COMPOSE.read_text(encoding="utf-8")))
    for service in compose["services"].values():
        variables.update(k for k in service.get("environment", {}) if k.startswith("BEATWATCH_"))
    missing = sorted(v for v in variables if f"`{v}`" not in docs)
    assert not missing, f"variables not documented in docs/deployment.md: {missing}"


# --- Dockerfile -----------------------------------------------------------------------


def test_dockerfile_is_slim_multistage_non_root_with_the_model():
    text = DOCKERFILE.read_text(encoding="utf-8")
    froms = re.findall(r"^FROM\s+(\S+)", text, flags=re.MULTILINE)
    assert len(froms) >= 2, "multi-stage: the build stage stays out of the image"
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.\d+-slim-\w+$", text, flags=re.MULTILINE)
    users = re.findall(r"^USER\s+(\S+)", text, flags=re.MULTILINE)
    assert users and users[-1].split(":")[0] not in {"root", "0"}
    assert "COPY models/ /app/models/" in text
    assert "BEATWATCH_MODEL=/app/models/ecg5000" in text
    assert 'ENTRYPOINT ["beatwatch"]' in text
    assert not re.search(r"apt-get install|build-essential|gcc", text), "no build tools"
    runtime = text.split("\nFROM ")[-1]
    assert "COPY --from=build /opt/venv /opt/venv" in runtime


def test_dockerignore_keeps_the_context_small_and_data_out():
    text = (REPO / ".dockerignore").read_text(encoding="utf-8")
    lines = [line.strip() for line in text.splitlines() if line.strip() and line[0] != "#"]
    assert lines[0] == "**", "allow-list: exclude everything, then re-include"
    included = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    assert included == {
        "pyproject.toml",
        "constraints.txt",
        "README.md",
        "beatwatch",
        "producer",
        "detector",
        "trainer",
        "models",
    }
    assert "**/ecg.csv" in lines and "**/*.tsv" in lines


# Read by the data loader (beatwatch.data.cache_dir), not a command-line option.
NOT_FLAGS = {"BEATWATCH_CACHE_DIR"}


@pytest.mark.parametrize(("service", "command"), sorted(APP_SERVICES.items()))
@pytest.mark.subprocess
def test_compose_sets_only_variables_the_command_reads(compose, service, command):
    env = {**os.environ, "COLUMNS": "300"}
    env = {k: v for k, v in env.items() if not k.startswith("BEATWATCH_")}
    result = subprocess.run(
        [sys.executable, "-m", "beatwatch.cli", command, "--help"],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    unknown = [
        variable
        for variable in compose["services"][service]["environment"]
        if variable not in NOT_FLAGS and f"[{variable}" not in result.stdout
    ]
    assert not unknown, f"`beatwatch {command}` has no option for {unknown}"
