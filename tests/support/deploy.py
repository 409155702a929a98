"""What the deployment tests share: file paths, PromQL name extraction, exposition names, tools."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.support.paths import REPO_ROOT

REPO = REPO_ROOT
DEPLOY = REPO / "deploy"
RULES = DEPLOY / "rules" / "beatwatch.rules.yml"
RULES_TEST = DEPLOY / "rules" / "beatwatch.rules.test.yml"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "beatwatch.json"
# Series Prometheus itself adds; no program exports them.
SYNTHETIC_METRICS = {"up"}
PROMQL_WORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "inf",
    "nan",
}


def load_yaml(path: Path) -> Any:
    """Parse one YAML file."""
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def require_tool(name: str) -> str:
    """Path of a Debian tool; fail under CI (``CI=true``), else skip, when it is missing."""
    path = shutil.which(name)
    if path:
        return path
    reason = f"{name} not installed (Debian packages: `make system-deps`)"
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        pytest.fail(reason)
    pytest.skip(reason)


def run_tool(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run a tool from the repository root; capture its output."""
    return subprocess.run(
        args, input=stdin, capture_output=True, text=True, cwd=REPO, timeout=120, check=False
    )


def promql_metric_names(expr: str) -> set[str]:
    """Metric names an expression selects (functions, keywords and labels removed)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names: set[str] = set()
    for match in re.finditer(r"(?<![\w:.$])[a-zA-Z_:][\w:]*", text):
        name = match.group(0)
        if text[match.end() :].lstrip().startswith("(") or name.lower() in PROMQL_WORDS:
            continue
        names.add(name)
    return names


def rules() -> list[dict[str, Any]]:
    """Every rule of the rules file."""
    return [rule for group in load_yaml(RULES)["groups"] for rule in group["rules"]]


def dashboard_panels() -> list[dict[str, Any]]:
    """All panels of the dashboard, rows' children included."""
    panels: list[dict[str, Any]] = []
    for panel in json.loads(DASHBOARD.read_text(encoding="utf-8"))["panels"]:
        panels.append(panel)
        panels.extend(panel.get("panels", []))
    return panels


def dashboard_exprs() -> list[str]:
    """Every PromQL expression of the dashboard."""
    return [t["expr"] for p in dashboard_panels() for t in p.get("targets", [])]


def exported_names(exposition: str) -> set[str]:
    """Every series name an exposition text holds or declares (labelled families too)."""
    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_sum", "_count", "_created"),
        "summary": ("", "_sum", "_count", "_created"),
        "info": ("_info",),
    }
    names: set[str] = set()
    for family in text_string_to_metric_families(exposition):
        names.update(sample.name for sample in family.samples)
        names.update(family.name + s for s in suffixes.get(family.type, ("",)))
    return names
