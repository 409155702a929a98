"""What the Kubernetes tests share: the manifests' paths, rendering, and reading them as data.

Rendering uses ``kubectl kustomize`` (kustomize v4 or later: components,
``labels``, ``patches``). The helpers below read rendered resources the way
the cluster would: a container's environment is its ``envFrom`` ConfigMaps,
then its ``env``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.deploy import REPO, run_tool

KUBERNETES = REPO / "deploy" / "kubernetes"
SCHEMAS = KUBERNETES / "schemas"
# What a user applies: each renders on its own.
OVERLAYS = ("overlays/small", "overlays/production", "trainer")
# API groups of the custom resources; everything else is a built-in kind.
CUSTOM_GROUPS = {"keda.sh", "monitoring.coreos.com", "kafka.strimzi.io"}
KUBECTL_MISSING = "kubectl with kustomize v4+ not found: `make kubectl` installs one"

Resource = dict[str, Any]


def require_kubectl() -> str:
    """Path of kubectl; fail under CI (``CI=true``), else skip, when it is missing."""
    path = shutil.which("kubectl") or shutil.which("kubectl", path=str(REPO / ".venv" / "bin"))
    if path:
        return path
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        pytest.fail(KUBECTL_MISSING)
    pytest.skip(KUBECTL_MISSING)


def render(kubectl: str, directory: Path) -> list[Resource]:
    """``kubectl kustomize DIRECTORY``, parsed; fails the test with kustomize's message."""
    result = run_tool(kubectl, "kustomize", str(directory))
    assert result.returncode == 0, f"{directory}: {result.stderr}"
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def api_group(resource: Resource) -> str:
    """The resource's API group ('' for the core group)."""
    version: str = resource["apiVersion"]
    return version.split("/")[0] if "/" in version else ""


def find(resources: list[Resource], kind: str, name: str | None = None) -> list[Resource]:
    """The resources of ``kind`` (and ``name``, when given)."""
    return [
        r
        for r in resources
        if r["kind"] == kind and (name is None or r["metadata"]["name"] == name)
    ]


def one(resources: list[Resource], kind: str, name: str) -> Resource:
    """The one resource of ``kind`` called ``name``."""
    (found,) = find(resources, kind, name)
    return found


def pod_spec(workload: Resource) -> dict[str, Any]:
    """The pod template's spec of a Deployment or Job."""
    spec: dict[str, Any] = workload["spec"]["template"]["spec"]
    return spec


def container_env(resources: list[Resource], container: dict[str, Any]) -> dict[str, str]:
    """A container's environment: its ConfigMaps (``envFrom``) in order, then ``env`` values."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        ref = source["configMapRef"]["name"]
        env.update(one(resources, "ConfigMap", ref).get("data", {}))
    for variable in container.get("env", []):
        env[variable["name"]] = variable.get("value", "")
    return env


def workload_containers(resources: list[Resource]) -> list[tuple[Resource, dict[str, Any]]]:
    """Every (workload, container) of the Deployments and Jobs."""
    return [
        (workload, container)
        for kind in ("Deployment", "Job")
        for workload in find(resources, kind)
        for container in pod_spec(workload)["containers"]
    ]


def component(workload: Resource) -> str:
    """The workload's ``app.kubernetes.io/component`` label (detector, producer, ...)."""
    label: str = workload["metadata"]["labels"]["app.kubernetes.io/component"]
    return label


def load_yaml_docs(path: Path) -> list[Resource]:
    """The documents of one YAML file."""
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]
