"""The Kubernetes manifests, rendered and checked offline: no cluster, no Docker engine.

Each overlay is rendered with ``kubectl kustomize``; built-in kinds are
validated with ``kubernetes-validate`` (strict: unknown fields fail), custom
resources (KEDA, Prometheus Operator, Strimzi) with ``check-jsonschema``
against the schemas vendored in ``deploy/kubernetes/schemas``; ``checkov``
scans the rendered manifests and the Dockerfile and every skip must carry its
reason. Then the manifests are checked against what they describe: the probes
against the detector's real HTTP endpoint, the PrometheusRule against the
compose deployment's rules file and the metrics contract, the autoscaler's
bound against the topic's partitions, the commands and settings against
docker-compose.yml. ``tests/integration/test_deploy.py`` checks the rule's
metrics and the probe paths on a live detector.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml
from prometheus_client import CollectorRegistry

from beatwatch.changelog import CHANGELOG_CONFIG, STATE_TOPIC
from beatwatch.cli import COMMANDS
from beatwatch.exposition import MetricsServer
from beatwatch.incident import INCIDENTS_TOPIC
from beatwatch.kafka import ALERTS_TOPIC, BEATS_TOPIC, DLQ_TOPIC
from tests.support.deploy import (
    DEPLOY,
    REPO,
    RULES,
    SYNTHETIC_METRICS,
    exported_names,
    load_yaml,
    promql_metric_names,
    run_tool,
)
from tests.support.kubernetes import (
    CUSTOM_GROUPS,
    KUBERNETES,
    OVERLAYS,
    SCHEMAS,
    Resource,
    api_group,
    component,
    container_env,
    find,
    one,
    pod_spec,
    render,
    require_kubectl,
    workload_containers,
)
from tests.unit.test_deploy_files import contract_exposition

COMPOSE = REPO / "docker-compose.yml"
# Kubernetes versions the built-in kinds must validate against: an older release
# (PodDisruptionBudget policy/v1 and the other APIs used are GA there) and the
# newest kubernetes-validate knows.
KUBERNETES_VERSIONS = ("1.31.0", kubernetes_validate.latest_version())
# Compose services whose program runs in a pod, and the command each runs.
PROGRAMS = {"detector": "detect", "producer": "produce", "trainer": "train"}
TOPICS = {BEATS_TOPIC, ALERTS_TOPIC, DLQ_TOPIC, INCIDENTS_TOPIC, STATE_TOPIC}
# Settings that differ from docker-compose.yml on purpose, and why.
DIFFERENT_FROM_COMPOSE = {
    "BEATWATCH_BOOTSTRAP_SERVERS": "the cluster's Kafka, not compose's `kafka` service",
    "BEATWATCH_REPLICATION_FACTOR": "three brokers, not compose's one",
    "BEATWATCH_PARTITIONS": "sized per overlay (docs/kubernetes.md)",
}
# Read by the data loader (beatwatch.data.cache_dir), not a command-line option.
NOT_FLAGS = {"BEATWATCH_CACHE_DIR"}
# Measured (README, Performance (g)): detector resident memory peak over 1M beats.
DETECTOR_PEAK_RSS_MIB = 632
CHECKOV_VERSION = "3.3.30"

# kubectl renders every overlay, and the validators and the scanner are command-line tools.
pytestmark = pytest.mark.subprocess


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[Resource]]:
    kubectl = require_kubectl()
    return {name: render(kubectl, KUBERNETES / name) for name in OVERLAYS}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = load_yaml(COMPOSE)
    return data


def compose_default(value: str) -> str:
    """The value compose uses when the variable is unset: ``${X:-v}`` -> ``v``."""
    match = re.fullmatch(r"\$\{\w+:-(.*)\}", value)
    return match.group(1) if match else value


def beats_partitions(resources: list[Resource]) -> int:
    """Partitions of the beats topic as the overlay creates it (KafkaTopic or topics job)."""
    (detector,) = find(resources, "Deployment", "beatwatch-detector")
    beats = container_env(resources, pod_spec(detector)["containers"][0])["BEATWATCH_BEATS_TOPIC"]
    topics = [t for t in find(resources, "KafkaTopic") if t["spec"]["topicName"] == beats]
    if topics:
        (topic,) = topics
        partitions: int = topic["spec"]["partitions"]
        return partitions
    (job,) = find(resources, "Job", "beatwatch-topics")
    env = container_env(resources, pod_spec(job)["containers"][0])
    assert env["BEATWATCH_BEATS_TOPIC"] == beats
    return int(env["BEATWATCH_PARTITIONS"])


def created_topics(resources: list[Resource]) -> dict[str, int]:
    """Topic name -> partitions, as the overlay creates them."""
    topics = {
        t["spec"]["topicName"]: t["spec"]["partitions"] for t in find(resources, "KafkaTopic")
    }
    for job in find(resources, "Job", "beatwatch-topics"):
        env = container_env(resources, pod_spec(job)["containers"][0])
        for variable in ("BEATS", "ALERTS", "DLQ", "INCIDENTS", "STATE"):
            topics[env[f"BEATWATCH_{variable}_TOPIC"]] = int(env["BEATWATCH_PARTITIONS"])
    return topics


def most_detectors(resources: list[Resource]) -> int:
    """The most detector pods the overlay can run at once, a rollout's surge included."""
    detector = one(resources, "Deployment", "beatwatch-detector")
    scaled = [
        s
        for s in find(resources, "ScaledObject")
        if s["spec"]["scaleTargetRef"]["name"] == "beatwatch-detector"
    ]
    replicas = scaled[0]["spec"]["maxReplicaCount"] if scaled else detector["spec"]["replicas"]
    surge = detector["spec"]["strategy"]["rollingUpdate"]["maxSurge"]
    if isinstance(surge, str):  # a percentage of the replicas, rounded up
        surge = math.ceil(replicas * int(surge.rstrip("%")) / 100)
    return int(replicas) + int(surge)


# --- rendering and schemas -------------------------------------------------------------


def test_every_overlay_renders_to_namespaced_resources(rendered):
    for name, resources in rendered.items():
        assert resources, name
        for resource in resources:
            if resource["kind"] != "Namespace":
                assert resource["metadata"].get("namespace"), f"{name}: {resource['kind']}"
    kinds = {r["kind"] for r in rendered["overlays/production"]}
    assert {
        "ScaledObject",
        "KafkaTopic",
        "PodMonitor",
        "PrometheusRule",
        "PodDisruptionBudget",
        "Service",
        "TriggerAuthentication",
    } <= kinds
    assert "ScaledObject" not in {r["kind"] for r in rendered["overlays/small"]}


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_built_in_kinds_pass_kubernetes_validate(rendered, version):
    checked = 0
    for name, resources in rendered.items():
        for resource in resources:
            if api_group(resource) in CUSTOM_GROUPS:
                continue
            try:
                kubernetes_validate.validate(resource, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(f"{name}: {resource['kind']}/{resource['metadata']['name']}: {exc}")
            checked += 1
    assert checked >= 20


def schema_file(resource: Resource) -> Path:
    """The vendored schema of a custom resource."""
    group, version = resource["apiVersion"].split("/")
    return SCHEMAS / f"{group}_{version}_{resource['kind']}.json"


def check_jsonschema(schema: Path, instances: list[Path]) -> subprocess.CompletedProcess[str]:
    """Run the check-jsonschema CLI of this interpreter's environment."""
    cli = Path(sys.executable).with_name("check-jsonschema")
    return run_tool(str(cli), "--schemafile", str(schema), *map(str, instances))


def test_custom_resources_pass_check_jsonschema_against_vendored_schemas(rendered, tmp_path):
    by_schema: dict[Path, list[Path]] = {}
    for name, resources in rendered.items():
        for i, resource in enumerate(resources):
            if api_group(resource) not in CUSTOM_GROUPS:
                continue
            schema = schema_file(resource)
            assert schema.is_file(), f"{name}: no vendored schema for {resource['apiVersion']}"
            path = tmp_path / f"{name.replace('/', '-')}-{i}-{resource['kind']}.yaml"
            path.write_text(yaml.safe_dump(resource), encoding="utf-8")
            by_schema.setdefault(schema, []).append(path)
    assert {p.name.split("_")[-1] for p in by_schema} == {
        "ScaledObject.json",
        "TriggerAuthentication.json",
        "PodMonitor.json",
        "PrometheusRule.json",
        "KafkaTopic.json",
    }
    for schema, instances in by_schema.items():
        result = check_jsonschema(schema, instances)
        assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("kind", "mistake"),
    [
        (
            "ScaledObject",
            lambda r: r["spec"].update(maxReplicaCounts=r["spec"].pop("maxReplicaCount")),
        ),
        ("ScaledObject", lambda r: r["spec"]["triggers"][0].pop("type")),
        ("KafkaTopic", lambda r: r["spec"].update(replicas="3")),
        ("KafkaTopic", lambda r: r["spec"].update(partition=12)),
        ("PrometheusRule", lambda r: r["spec"]["groups"][0]["rules"][0].update(four="2m")),
        ("PrometheusRule", lambda r: r["spec"]["groups"][0]["rules"][0].update(record="x")),
        ("PodMonitor", lambda r: r["spec"]["podMetricsEndpoints"][0].update(interval="15 s")),
        ("TriggerAuthentication", lambda r: r["spec"]["secretTargetRef"][0].pop("key")),
    ],
)
def test_vendored_schemas_reject_a_mistake(rendered, tmp_path, kind, mistake):
    resource = json.loads(json.dumps(find(rendered["overlays/production"], kind)[0]))
    mistake(resource)
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(resource), encoding="utf-8")
    assert check_jsonschema(schema_file(resource), [path]).returncode == 1


def test_vendored_schemas_note_their_source_and_version():
    notes = (SCHEMAS / "README.md").read_text(encoding="utf-8")
    for schema in SCHEMAS.glob("*.json"):
        assert f"`{schema.name}`" in notes, f"{schema.name}: source and version not noted"
        json.loads(schema.read_text(encoding="utf-8"))


# --- security scan -------------------------------------------------------------------------


def checkov_binary() -> str:
    """The checkov binary: from its own environment (its pins clash with the project's), or PATH."""
    for candidate in (os.environ.get("CHECKOV"), str(REPO / ".venv-checkov" / "bin" / "checkov")):
        if candidate and Path(candidate).is_file():
            return candidate
    found = shutil.which("checkov")
    if found:
        return found
    reason = (
        f"checkov not installed (`make checkov` puts checkov {CHECKOV_VERSION} in .venv-checkov)"
    )
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        pytest.fail(reason)
    pytest.skip(reason)


def test_checkov_passes_manifests_and_dockerfile_with_every_skip_explained(rendered, tmp_path):
    checkov = checkov_binary()
    for name, resources in rendered.items():
        path = tmp_path / f"{name.replace('/', '-')}.yaml"
        path.write_text(yaml.safe_dump_all(resources), encoding="utf-8")
    shutil.copy(DEPLOY / "Dockerfile", tmp_path / "Dockerfile")
    result = subprocess.run(
        [
            checkov,
            "-d",
            str(tmp_path),
            "--framework",
            "kubernetes",
            "dockerfile",
            "--skip-download",
            "-o",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "BC_SKIP_MAPPING": "TRUE"},
    )
    reports = json.loads(result.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    assert {r["check_type"] for r in reports} == {"kubernetes", "dockerfile"}, result.stderr
    for report in reports:
        failed = [
            (c["check_id"], c["resource"], c["check_name"])
            for c in report["results"].get("failed_checks", [])
        ]
        assert not failed, f"{report['check_type']}: {failed}"
        assert report["summary"]["passed"] > 0
        for check in report["results"].get("skipped_checks", []):
            reason = check["check_result"].get("suppress_comment", "")
            assert len(reason.split()) >= 5, f"{check['check_id']} skipped without a reason"


# --- consistency: what the manifests say against what the programs do ---------------------


def test_probes_match_what_the_detector_serves(rendered):
    """Every probe's port is the program's metrics port, and its path answers 200."""
    probes: set[str] = set()
    for name, resources in rendered.items():
        for _workload, container in workload_containers(resources):
            env = container_env(resources, container)
            ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
            for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
                if kind not in container:
                    continue
                get = container[kind]["httpGet"]
                port = ports.get(get["port"], get["port"])
                (variable,) = [v for v in env if v.endswith("_METRICS_PORT")]
                assert str(port) == env[variable], f"{name}: {kind} port"
                probes.add(get["path"])
        for deployment in find(resources, "Deployment", "beatwatch-detector"):
            detector = pod_spec(deployment)["containers"][0]
            assert detector["readinessProbe"]["httpGet"]["path"] == "/ready", name
            assert detector["livenessProbe"]["httpGet"]["path"] == "/healthz", name
    server = MetricsServer(CollectorRegistry(), 0, host="127.0.0.1", ready=lambda: True).start()
    try:
        for path in sorted(probes):
            url = f"http://127.0.0.1:{server.port}{path}"
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    status = response.status
            except urllib.error.HTTPError as exc:
                status = exc.code
            assert status == 200, f"probe path {path} answers {status}"
    finally:
        server.stop()


def test_metrics_port_is_the_one_the_detector_uses_without_settings(rendered):
    from detector.cli import add_arguments

    parser = __import__("argparse").ArgumentParser()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BEATWATCH_")}
    with pytest.MonkeyPatch.context() as patch:
        for key in set(os.environ) - set(env):
            patch.delenv(key)
        add_arguments(parser)
    default = parser.parse_args([]).metrics_port
    for resources in rendered.values():
        for service in find(resources, "Service", "beatwatch-detector"):
            assert service["spec"]["ports"][0]["port"] == default


def test_prometheus_rule_is_the_compose_rules_file(rendered):
    result = run_tool(sys.executable, str(KUBERNETES / "sync_rules.py"), "--check")
    assert result.returncode == 0, result.stderr
    rules_groups = load_yaml(RULES)["groups"]
    for name in ("overlays/small", "overlays/production"):
        rule = one(rendered[name], "PrometheusRule", "beatwatch")
        assert rule["spec"]["groups"] == rules_groups, name


def test_prometheus_rule_metrics_are_in_the_metrics_contract(rendered):
    rule = one(rendered["overlays/production"], "PrometheusRule", "beatwatch")
    exported = exported_names(contract_exposition()) | SYNTHETIC_METRICS
    used = {
        name
        for group in rule["spec"]["groups"]
        for r in group["rules"]
        for name in promql_metric_names(str(r["expr"]))
    }
    assert used and used - exported == set()


def test_pod_monitor_scrapes_as_the_rules_expect(rendered):
    """The job label is the component label, so `job="detector"` selects the detector pods."""
    for name in ("overlays/small", "overlays/production"):
        resources = rendered[name]
        monitor = one(resources, "PodMonitor", "beatwatch")
        assert monitor["spec"]["jobLabel"] == "app.kubernetes.io/component"
        (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
        (expression,) = monitor["spec"]["selector"]["matchExpressions"]
        assert set(expression["values"]) == {"detector", "producer"}
        for workload in find(resources, "Deployment"):
            (container,) = pod_spec(workload)["containers"]
            assert endpoint["port"] in {p["name"] for p in container["ports"]}
            assert component(workload) in expression["values"]
    jobs = {m.group(1) for m in re.finditer(r'job="(\w+)"', RULES.read_text(encoding="utf-8"))}
    assert jobs <= {"detector", "producer"}


@pytest.mark.parametrize("name", ["overlays/small", "overlays/production"])
def test_detectors_never_outnumber_the_beats_partitions(rendered, name):
    resources = rendered[name]
    partitions = beats_partitions(resources)
    assert most_detectors(resources) <= partitions, (
        f"{name}: up to {most_detectors(resources)} detector pods (max replicas + rollout "
        f"surge) for {partitions} partitions: the extra ones never turn ready"
    )
    detector = pod_spec(one(resources, "Deployment", "beatwatch-detector"))["containers"][0]
    assert int(container_env(resources, detector)["BEATWATCH_PARTITIONS"]) == partitions


def test_the_autoscaler_watches_the_detectors_group_and_topic(rendered):
    resources = rendered["overlays/production"]
    (scaled,) = find(resources, "ScaledObject")
    deployment = one(resources, "Deployment", scaled["spec"]["scaleTargetRef"]["name"])
    assert "replicas" not in deployment["spec"], "KEDA owns the replica count"
    env = container_env(resources, pod_spec(deployment)["containers"][0])
    (kafka,) = [t for t in scaled["spec"]["triggers"] if t["type"] == "kafka"]
    meta = kafka["metadata"]
    assert meta["bootstrapServers"] == env["BEATWATCH_BOOTSTRAP_SERVERS"]
    assert meta["consumerGroup"] == env["BEATWATCH_GROUP_ID"]
    assert meta["topic"] == env["BEATWATCH_BEATS_TOPIC"]
    assert meta["allowIdleConsumers"] == "false"
    assert scaled["spec"]["minReplicaCount"] >= 3
    auth = one(resources, "TriggerAuthentication", kafka["authenticationRef"]["name"])
    assert {ref["name"] for ref in auth["spec"]["secretTargetRef"]} == {"beatwatch-kafka-client"}
    assert (meta["sasl"], meta["tls"]) == ("scram_sha512", "enable")
    assert env["BEATWATCH_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert env["BEATWATCH_SASL_MECHANISM"] == "SCRAM-SHA-512"


@pytest.mark.parametrize("name", ["overlays/small", "overlays/production"])
def test_topics_are_the_programs_topics_and_the_changelog_is_co_partitioned(rendered, name):
    topics = created_topics(rendered[name])
    assert set(topics) == TOPICS
    detector = pod_spec(one(rendered[name], "Deployment", "beatwatch-detector"))["containers"][0]
    env = container_env(rendered[name], detector)
    for variable in ("BEATS", "ALERTS", "DLQ", "INCIDENTS", "STATE"):
        assert env[f"BEATWATCH_{variable}_TOPIC"] in topics, f"{name}: the detector's {variable}"
    for job in find(rendered[name], "Job", "beatwatch-topics"):
        env = container_env(rendered[name], pod_spec(job)["containers"][0])
        assert int(env["BEATWATCH_REPLICATION_FACTOR"]) == 3
        assert int(env["BEATWATCH_MIN_INSYNC_REPLICAS"]) == 2
        assert int(env["BEATWATCH_RETENTION_MS"]) > 0
    assert topics[STATE_TOPIC] == topics[BEATS_TOPIC]
    for topic in find(rendered[name], "KafkaTopic"):
        config = topic["spec"]["config"]
        assert topic["spec"]["replicas"] == 3 and int(config["min.insync.replicas"]) == 2
        compacted = topic["spec"]["topicName"] == STATE_TOPIC
        assert (config.get("cleanup.policy") == "compact") == compacted
        if compacted:  # the changelog's configuration, as the detector would create it
            assert {k: str(v) for k, v in config.items()}.items() >= CHANGELOG_CONFIG.items()
        assert compacted or int(config["retention.ms"]) > 0


def test_containers_run_the_same_cli_as_compose(rendered, compose):
    seen = set()
    for resources in rendered.values():
        for workload, container in workload_containers(resources):
            assert "command" not in container, "the image's entry point (beatwatch) runs"
            assert container["image"].rsplit("/", 1)[-1].split(":")[0] == "beatwatch"
            (command,) = container["args"]
            assert command in COMMANDS, f"`beatwatch {command}` does not exist"
            service = component(workload)
            if service in PROGRAMS:
                assert [command] == compose["services"][service]["command"] == [PROGRAMS[service]]
                seen.add(service)
    assert seen == set(PROGRAMS)
    for resources in rendered.values():
        for kind in ("Deployment", "Job"):
            for workload in find(resources, kind):
                for init in pod_spec(workload).get("initContainers", []):
                    assert "command" not in init and init["args"][0] in COMMANDS, init["name"]
    dockerfile = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    assert 'ENTRYPOINT ["beatwatch"]' in dockerfile


def test_settings_are_compose_settings(rendered, compose):
    """Each program gets every variable compose gives it, with compose's default value."""
    for resources in rendered.values():
        for workload, container in workload_containers(resources):
            service = component(workload)
            if service not in PROGRAMS:
                continue
            env = container_env(resources, container)
            for variable, value in compose["services"][service]["environment"].items():
                assert variable in env, f"{service}: {variable} not set"
                if variable in DIFFERENT_FROM_COMPOSE or variable == "BEATWATCH_MODEL":
                    continue
                assert env[variable] == compose_default(str(value)), f"{service}: {variable}"
            model = env.get("BEATWATCH_MODEL")
            assert model in (
                None,
                compose_default(compose["services"]["detector"]["environment"]["BEATWATCH_MODEL"]),
            ) or model.startswith("/models/")


@pytest.mark.parametrize("command", ["detect", "produce", "train", "topics"])
def test_every_variable_is_read_by_the_command_it_is_given_to(rendered, command):
    env = {k: v for k, v in os.environ.items() if not k.startswith("BEATWATCH_")}
    result = subprocess.run(
        [sys.executable, "-m", "beatwatch.cli", command, "--help"],
        capture_output=True,
        text=True,
        env={**env, "COLUMNS": "300"},
        cwd=REPO,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    for name, resources in rendered.items():
        for _, container in workload_containers(resources):
            if container["args"] != [command]:
                continue
            unknown = [
                v
                for v in container_env(resources, container)
                if v.startswith("BEATWATCH_")
                and v not in NOT_FLAGS
                and f"[{v}" not in result.stdout
            ]
            assert not unknown, f"{name}: `beatwatch {command}` has no option for {unknown}"


def test_secrets_reach_the_programs_only_as_files(rendered):
    resources = rendered["overlays/production"]
    for workload, container in workload_containers(resources):
        env = container_env(resources, container)
        assert "BEATWATCH_SASL_PASSWORD" not in env
        assert not any("secretKeyRef" in v.get("valueFrom", {}) for v in container.get("env", []))
        if component(workload) == "topics":
            continue
        mounts = {m["name"]: m for m in container["volumeMounts"]}
        volumes = {v["name"]: v for v in pod_spec(workload)["volumes"]}
        (secret,) = [n for n, v in volumes.items() if "secret" in v]
        assert mounts[secret]["readOnly"] is True
        files = {
            f"{mounts[secret]['mountPath']}/{item['path']}"
            for item in volumes[secret]["secret"]["items"]
        }
        assert {env["BEATWATCH_SASL_PASSWORD_FILE"], env["BEATWATCH_SSL_CAFILE"]} <= files


def test_pods_are_non_root_with_read_only_root_and_writable_tmp(rendered):
    for name, resources in rendered.items():
        for workload, container in workload_containers(resources):
            pod = pod_spec(workload)
            assert pod["securityContext"]["runAsNonRoot"] is True, name
            assert pod["automountServiceAccountToken"] is False, name
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, name
            assert context["allowPrivilegeEscalation"] is False, name
            assert context["capabilities"]["drop"] == ["ALL"], name
            assert "/tmp" in {m["mountPath"] for m in container["volumeMounts"]}, name


def test_detector_resources_fit_the_measured_process(rendered):
    for resources in rendered.values():
        for workload, container in workload_containers(resources):
            if component(workload) != "detector":
                continue
            limits = container["resources"]["limits"]
            requests = container["resources"]["requests"]
            assert float(requests["cpu"]) >= 1, "one detector process keeps one core busy"
            memory_mib = int(limits["memory"].removesuffix("Gi")) * 1024
            assert memory_mib >= 1.5 * DETECTOR_PEAK_RSS_MIB
            assert int(requests["memory"].removesuffix("Mi")) >= DETECTOR_PEAK_RSS_MIB
            grace = pod_spec(workload)["terminationGracePeriodSeconds"]
            assert grace >= 15, "a batch plus four 3 s client closes must fit"


def test_production_spreads_at_least_three_detectors_over_nodes(rendered):
    resources = rendered["overlays/production"]
    pod = pod_spec(one(resources, "Deployment", "beatwatch-detector"))
    (term,) = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    spread = {c["topologyKey"]: c for c in pod["topologySpreadConstraints"]}
    assert spread["kubernetes.io/hostname"]["whenUnsatisfiable"] == "DoNotSchedule"
    (pdb,) = find(resources, "PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_spec_labels(resources).items()


def pod_spec_labels(resources: list[Resource]) -> dict[str, str]:
    """The detector pods' labels."""
    detector = one(resources, "Deployment", "beatwatch-detector")
    labels: dict[str, str] = detector["spec"]["template"]["metadata"]["labels"]
    return labels
