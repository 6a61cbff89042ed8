"""Helpers for the tests of deploy/, docker-compose.yml and the Dockerfile: where the
tools are, the PromQL the dashboard and the alert rules run, and the metrics it reads.

The tools come from Debian's packages through ``scripts/fetch-prometheus``: promtool
(``.cache/prometheus/bin``) and the Compose file JSON Schema (``.cache/compose-spec``);
and from PyPI through ``scripts/fetch-kubernetes-validate``: kubernetes-validate, which
checks the Kubernetes manifests against the schemas it carries
(``.cache/kubernetes-validate``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "triggerstream.json"
GRAFANA_PROVISIONING = DEPLOY / "grafana" / "provisioning"
PROMETHEUS_CONFIG = DEPLOY / "prometheus" / "prometheus.yml"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
ALERTS_TESTS = DEPLOY / "prometheus" / "alerts.test.yml"
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
COMPOSE_SCHEMA = ROOT / ".cache" / "compose-spec" / "compose_spec.json"
KUBERNETES = DEPLOY / "kubernetes"
KUSTOMIZATION = KUBERNETES / "kustomization.yaml"
FETCH_KUBERNETES_VALIDATE = ROOT / "scripts" / "fetch-kubernetes-validate"
KUBERNETES_VALIDATE = ROOT / ".cache" / "kubernetes-validate" / "bin" / "kubernetes-validate"

FETCH_HINT = "run scripts/fetch-prometheus (it unpacks Debian's packages into .cache/)"

PROMETHEUS_BUILTINS = frozenset(
    {
        "up",
        "ALERTS",
        "ALERTS_FOR_STATE",
        "scrape_duration_seconds",
        "scrape_samples_scraped",
        "scrape_samples_post_metric_relabeling",
        "scrape_series_added",
    }
)
"""Series Prometheus makes itself for every target or rule, not read from /metrics."""

GRAFANA_VARIABLES = {"__rate_interval": "1m", "__interval": "1m", "__range": "1h"}
"""Values standing in for Grafana's built-in variables when an expression is checked."""


class ToolMissing(RuntimeError):
    """A tool the deploy tests need is not there; the message says how to get it."""


def promtool() -> Path:
    """promtool: ``$PROMTOOL``, else ``.cache/prometheus/bin/promtool``, else on PATH."""
    candidates = [
        os.environ.get("PROMTOOL"),
        str(ROOT / ".cache" / "prometheus" / "bin" / "promtool"),
        shutil.which("promtool"),
    ]
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return Path(candidate)
    raise ToolMissing(f"promtool not found ($PROMTOOL, .cache/prometheus/bin, PATH): {FETCH_HINT}")


def compose_schema() -> dict[str, Any]:
    """The Compose file JSON Schema (compose-spec) of Debian's docker-compose package."""
    if not COMPOSE_SCHEMA.is_file():
        raise ToolMissing(f"no Compose file schema at {COMPOSE_SCHEMA}: {FETCH_HINT}")
    schema: dict[str, Any] = json.loads(COMPOSE_SCHEMA.read_text(encoding="utf-8"))
    return schema


def kubernetes_validate() -> Path:
    """kubernetes-validate: ``$KUBERNETES_VALIDATE``, else the one
    ``scripts/fetch-kubernetes-validate`` installs under ``.cache/``."""
    candidates = [os.environ.get("KUBERNETES_VALIDATE"), str(KUBERNETES_VALIDATE)]
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return Path(candidate)
    raise ToolMissing(
        f"kubernetes-validate not found ($KUBERNETES_VALIDATE, {KUBERNETES_VALIDATE}): run "
        "scripts/fetch-kubernetes-validate (it installs the pinned version from PyPI)"
    )


def kubernetes_validate_pin() -> str:
    """The kubernetes-validate version ``scripts/fetch-kubernetes-validate`` installs."""
    text = FETCH_KUBERNETES_VALIDATE.read_text(encoding="utf-8")
    match = re.search(r"^version=([\w.]+)$", text, re.MULTILINE)
    assert match, f"no version= line in {FETCH_KUBERNETES_VALIDATE}"
    return match.group(1)


def kustomization() -> dict[str, Any]:
    """deploy/kubernetes/kustomization.yaml."""
    loaded: dict[str, Any] = load_yaml(KUSTOMIZATION)
    return loaded


def kubernetes_files() -> list[Path]:
    """The manifests the kustomization ties together, in its order."""
    return [KUBERNETES / name for name in kustomization()["resources"]]


def kubernetes_resources() -> list[dict[str, Any]]:
    """Every resource of every manifest the kustomization lists."""
    resources: list[dict[str, Any]] = []
    for path in kubernetes_files():
        with path.open(encoding="utf-8") as file:
            resources += [document for document in yaml.safe_load_all(file) if document]
    return resources


@dataclass(frozen=True)
class Query:
    """One PromQL expression and where it is, for messages."""

    where: str
    expr: str

    def promql(self) -> str:
        """The expression with Grafana's variables replaced, as Prometheus would get it."""
        return substitute_grafana_variables(self.expr)


def load_yaml(path: Path) -> Any:
    """A YAML file (compose anchors and ``<<`` merges resolved)."""
    with path.open(encoding="utf-8") as file:
        return yaml.safe_load(file)


@cache
def dashboard() -> dict[str, Any]:
    """The Grafana dashboard (deploy/grafana/dashboards/triggerstream.json)."""
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return loaded


def dashboard_panels(board: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Every panel, rows left out, panels inside collapsed rows included."""
    found: list[dict[str, Any]] = []
    for panel in (board or dashboard()).get("panels", []):
        if panel.get("type") == "row":
            found.extend(panel.get("panels", []))
        else:
            found.append(panel)
    return found


def dashboard_queries(board: dict[str, Any] | None = None) -> list[Query]:
    """The PromQL of every panel target and annotation (template variable queries, which
    are Grafana's ``label_values(...)``, are not PromQL and are left out)."""
    board = board or dashboard()
    queries = [
        Query(f"panel {panel.get('title')!r} target {target.get('refId')}", target["expr"])
        for panel in dashboard_panels(board)
        for target in panel.get("targets", [])
        if "expr" in target
    ]
    queries += [
        Query(f"annotation {annotation.get('name')!r}", annotation["expr"])
        for annotation in board.get("annotations", {}).get("list", [])
        if "expr" in annotation
    ]
    return queries


def alert_rules() -> list[dict[str, Any]]:
    """Every rule of deploy/prometheus/alerts.yml, over its groups."""
    groups = load_yaml(ALERTS)["groups"]
    return [rule for group in groups for rule in group["rules"]]


def alert_queries() -> list[Query]:
    """The expression of every alert rule."""
    return [Query(f"alert {rule['alert']}", str(rule["expr"])) for rule in alert_rules()]


def substitute_grafana_variables(expr: str) -> str:
    """``$__rate_interval`` and friends become durations, other variables (``$instance``,
    ``${instance}``; used in regex matchers) match anything."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        return GRAFANA_VARIABLES.get(name, ".*")

    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)", value, expr)


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGES = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_IDENTIFIER = re.compile(r"(?<![\w:.])[A-Za-z_:][\w:]*")
_KEYWORDS = frozenset(
    {
        "and",
        "or",
        "unless",
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "offset",
        "bool",
        "inf",
        "nan",
    }
)


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects, exactly as written in it (label
    names, functions, aggregations, keywords, durations and numbers left out)."""
    text = substitute_grafana_variables(expr)
    text = _STRING.sub(" ", text)
    text = _MATCHERS.sub(" ", text)
    text = _RANGES.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    names = set()
    for match in _IDENTIFIER.finditer(text):
        name = match.group()
        if name.lower() in _KEYWORDS or text[match.end() :].lstrip().startswith("("):
            continue
        names.add(name)
    return names


def metric_names_used() -> set[str]:
    """Every metric the dashboard and the alert rules read from a worker's /metrics.

    Names are returned exactly as the expressions write them, which is how the series
    are named in the exposition: counters with their ``_total`` suffix
    (``triggerstream_events_total``), histograms as their ``_bucket``, ``_sum`` or
    ``_count`` series (``triggerstream_trigger_latency_seconds_bucket``), gauges as is
    (``triggerstream_consumer_lag``, ``process_resident_memory_bytes``). Series that
    Prometheus makes itself (``up``, ``ALERTS``, ``scrape_*``) are left out.
    :func:`metric_family` gives the name a series' ``# TYPE`` line carries.
    """
    names: set[str] = set()
    for query in dashboard_queries() + alert_queries():
        names |= metric_names(query.expr)
    return names - PROMETHEUS_BUILTINS


def metric_family(name: str) -> str:
    """The name on the ``# TYPE`` line of a series in prometheus_client's text format:
    a histogram's ``_bucket``, ``_sum`` and ``_count`` series give the histogram's name;
    counters keep ``_total`` there, and gauges are their own name."""
    return re.sub(r"_(?:bucket|sum|count)$", "", name)


@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction: its keyword (upper case), its arguments as written
    (continuation lines joined) and its line."""

    keyword: str
    arguments: str
    line: int

    def exec_form(self) -> list[str] | None:
        """The arguments as a JSON array (exec form), or None in shell form."""
        try:
            value = json.loads(self.arguments)
        except json.JSONDecodeError:
            return None
        if isinstance(value, list) and all(isinstance(item, str) for item in value):
            return value
        return None


def dockerfile_instructions(path: Path = DOCKERFILE) -> list[Instruction]:
    """The instructions of a Dockerfile, comments and blank lines left out."""
    instructions: list[Instruction] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue  # a comment inside a continued instruction
        if not pending:
            start = number
        if line.endswith("\\"):
            pending.append(line[:-1].strip())
            continue
        pending.append(line)
        keyword, _, arguments = " ".join(part for part in pending if part).partition(" ")
        instructions.append(Instruction(keyword.upper(), arguments.strip(), start))
        pending = []
    if pending:
        raise ValueError(f"{path}: the instruction at line {start} ends with a continuation")
    return instructions
