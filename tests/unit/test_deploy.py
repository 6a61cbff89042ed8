"""deploy/, docker-compose.yml and the Dockerfile, checked as far as this machine can
without a Docker engine: promtool on the Prometheus files, the dashboard's queries and
what it shows, the Compose file against the Compose specification's schema and against
the command line and the settings it drives, and the Dockerfile's instructions.

promtool and the Compose schema come from ``scripts/fetch-prometheus``; without them the
tests fail (they are never skipped).
"""

from __future__ import annotations

import fnmatch
import http.server
import re
import subprocess
import sys
import threading
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar, get_args

import click
import jsonschema
import pytest
import yaml
from packaging.specifiers import SpecifierSet
from prometheus_client import REGISTRY

import triggerstream.worker.metrics  # noqa: F401  (registers the worker's metrics)
from tests.conftest import free_port
from tests.deploy_support import (
    ALERTS,
    ALERTS_TESTS,
    COMPOSE_FILE,
    DASHBOARD,
    DEPLOY,
    DOCKERIGNORE,
    GRAFANA_PROVISIONING,
    KUBERNETES,
    KUSTOMIZATION,
    PROMETHEUS_BUILTINS,
    PROMETHEUS_CONFIG,
    ROOT,
    Instruction,
    Query,
    ToolMissing,
    alert_queries,
    alert_rules,
    compose_schema,
    dashboard,
    dashboard_panels,
    dashboard_queries,
    dockerfile_instructions,
    kubernetes_files,
    kubernetes_resources,
    kubernetes_validate,
    kubernetes_validate_pin,
    kustomization,
    load_yaml,
    metric_family,
    metric_names,
    metric_names_used,
    promtool,
    substitute_grafana_variables,
)
from triggerstream.cli import main
from triggerstream.records import Outcome
from triggerstream.settings import Settings
from triggerstream.testing.apache_kafka import KAFKA_VERSION

T = TypeVar("T")

DEFAULT_WEB_PORT: int = Settings.model_fields["web_port"].default
TRIGGERSTREAM_IMAGE_SERVICES = (
    "topics",
    "worker-1",
    "worker-2",
    "loadgen",
    "cluster-topics",
    "cluster-worker-1",
    "cluster-worker-2",
)
WORKERS = ("worker-1", "worker-2")
CLUSTER_BROKERS = ("kafka-1", "kafka-2", "kafka-3")
CLUSTER_WORKERS = ("cluster-worker-1", "cluster-worker-2")
CLUSTER_SERVICES = (*CLUSTER_BROKERS, "cluster-topics", *CLUSTER_WORKERS)


def need(tool: Callable[[], T]) -> T:
    """A tool from scripts/fetch-prometheus; without it the test fails (never skips)."""
    try:
        return tool()
    except ToolMissing as missing:
        pytest.fail(str(missing))


def run_promtool(promtool_path: Path, *args: str, cwd: Path | None = None) -> str:
    """Run promtool; fail the test with its output unless it succeeds."""
    result = subprocess.run(
        [str(promtool_path), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"promtool {' '.join(args)} failed:\n{output}"
    return output


# --- Prometheus: scrape config and alert rules --------------------------------------


def test_prometheus_config_passes_promtool() -> None:
    promtool_path = need(promtool)
    output = run_promtool(promtool_path, "check", "config", str(PROMETHEUS_CONFIG))
    assert "1 rule files found" in output, output


def test_alert_rules_pass_promtool() -> None:
    promtool_path = need(promtool)
    output = run_promtool(promtool_path, "check", "rules", str(ALERTS))
    assert f"{len(alert_rules())} rules found" in output


def test_alert_rule_unit_tests_pass() -> None:
    promtool_path = need(promtool)
    output = run_promtool(promtool_path, "test", "rules", ALERTS_TESTS.name, cwd=ALERTS.parent)
    assert "SUCCESS" in output


def test_every_alert_is_unit_tested_firing_and_quiet() -> None:
    tests = load_yaml(ALERTS_TESTS)
    assert tests["rule_files"] == [ALERTS.name]
    firing: set[str] = set()
    quiet: set[str] = set()
    for case in tests["tests"]:
        for check in case.get("alert_rule_test", []):
            (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = {rule["alert"] for rule in alert_rules()}
    assert names - firing == set(), "alerts never shown firing in alerts.test.yml"
    assert names - quiet == set(), "alerts never shown quiet in alerts.test.yml"


def test_every_alert_has_a_severity_a_summary_and_a_description() -> None:
    for rule in alert_rules():
        assert rule.get("labels", {}).get("severity") in {"critical", "warning", "info"}, rule
        annotations = rule.get("annotations", {})
        assert annotations.get("summary", "").strip(), rule["alert"]
        assert "look first" in annotations.get("description", "").lower(), (
            f"{rule['alert']}: the description should say what to look at first"
        )


def test_alert_names_are_unique() -> None:
    names = [rule["alert"] for rule in alert_rules()]
    assert len(names) == len(set(names))


def rule_named(name: str) -> dict[str, Any]:
    rules = {rule["alert"]: rule for rule in alert_rules()}
    assert name in rules, f"no alert {name} in {ALERTS.relative_to(ROOT)}"
    return rules[name]


@pytest.mark.parametrize(
    ("alert", "metric", "pattern", "for_"),
    [
        ("TriggerstreamWorkerDown", "up", r"==\s*0", "1m"),
        ("TriggerstreamWorkerNotReady", "triggerstream_ready", r"==\s*0", "5m"),
        (
            "TriggerstreamConsumerLagGrowing",
            "triggerstream_consumer_lag",
            r"\b(deriv|delta)\(",
            None,
        ),
        ("TriggerstreamDeadLetterRate", "triggerstream_events_invalid_total", r"\brate\(", None),
        (
            "TriggerstreamTriggerLatencyHigh",
            "triggerstream_trigger_latency_seconds_bucket",
            r"histogram_quantile\(\s*0\.99\b",
            None,
        ),
        (
            "TriggerstreamRuleStoppedFiring",
            "triggerstream_triggers_total",
            r"\boffset\s+1d\b",
            None,
        ),
    ],
)
def test_the_alerts_the_issue_asks_for_exist(
    alert: str, metric: str, pattern: str, for_: str | None
) -> None:
    rule = rule_named(alert)
    expr = str(rule["expr"])
    assert metric in metric_names(expr), expr
    assert re.search(pattern, expr), expr
    if for_ is not None:
        assert rule.get("for") == for_


def test_the_rule_stopped_firing_alert_is_per_rule() -> None:
    expr = str(rule_named("TriggerstreamRuleStoppedFiring")["expr"])
    assert set(grouping_labels(expr)) == {"rule"}


def test_the_scrape_targets_are_the_compose_workers_on_their_web_port(
    compose: dict[str, Any],
) -> None:
    config = load_yaml(PROMETHEUS_CONFIG)
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert "triggerstream" in jobs
    job = jobs["triggerstream"]
    assert job.get("metrics_path", "/metrics") == "/metrics"
    targets = {t for static in job["static_configs"] for t in static["targets"]}
    expected = {f"{name}:{web_port(compose['services'][name])}" for name in WORKERS}
    assert targets == expected
    # The cluster profile's workers by DNS: no target (so no WorkerDown) while it is down.
    found = {
        f"{name}:{dns['port']}"
        for dns in job.get("dns_sd_configs", [])
        for name in dns["names"]
        if dns.get("type", "SRV") == "A"
    }
    expected = {f"{name}:{web_port(compose['services'][name])}" for name in CLUSTER_WORKERS}
    assert found == expected
    alert_jobs = {
        m.group(1) for q in alert_queries() for m in re.finditer(r'job="([^"]*)"', q.expr)
    }
    assert alert_jobs == {"triggerstream"}, "alerts select a job that is not scraped"


# --- Grafana dashboard ---------------------------------------------------------------


def test_every_dashboard_expression_parses(tmp_path: Path) -> None:
    promtool_path = need(promtool)
    queries = dashboard_queries()
    assert len(queries) >= 15

    def check(batch: list[Query]) -> subprocess.CompletedProcess[str]:
        rules = {
            "groups": [
                {
                    "name": "dashboard",
                    "rules": [
                        {"record": f"dashboard:query_{i}", "expr": q.promql()}
                        for i, q in enumerate(batch)
                    ],
                }
            ]
        }
        path = tmp_path / "dashboard-rules.yml"
        path.write_text(yaml.safe_dump(rules), encoding="utf-8")
        return subprocess.run(
            [str(promtool_path), "check", "rules", str(path)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    if check(queries).returncode != 0:
        broken = [
            f"{q.where}: {q.promql()}\n{result.stdout}{result.stderr}"
            for q in queries
            if (result := check([q])).returncode != 0
        ]
        pytest.fail("dashboard expressions promtool cannot parse:\n" + "\n".join(broken))


def test_every_panel_has_a_title_and_the_provisioned_datasource() -> None:
    uid = provisioned_datasource()["uid"]
    panels = dashboard_panels()
    assert panels
    for panel in panels:
        assert panel.get("title", "").strip(), panel
        assert panel.get("datasource") == {"type": "prometheus", "uid": uid}, panel["title"]
        assert panel.get("targets"), f"{panel['title']}: no query"
        for target in panel["targets"]:
            assert target.get("datasource", panel["datasource"]) == panel["datasource"]
            assert target.get("expr", "").strip(), panel["title"]
    for variable in dashboard()["templating"]["list"]:
        if variable["type"] == "query":
            assert variable["datasource"]["uid"] == uid


def test_the_dashboard_is_a_grafana_dashboard() -> None:
    board = dashboard()
    assert board["uid"]
    assert board["title"]
    assert 36 <= board["schemaVersion"] <= 41
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in board["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]


def test_the_instance_variable_filters_every_worker_query() -> None:
    variables = {v["name"] for v in dashboard()["templating"]["list"]}
    assert "instance" in variables
    for query in dashboard_queries():
        assert 'instance=~"$instance"' in query.expr, query.where


def test_dashboard_and_alerts_select_metrics_by_name() -> None:
    # metric_names_used() reads names off the expressions: a __name__ matcher would hide one.
    for query in dashboard_queries() + alert_queries():
        assert "__name__" not in query.expr, query.where


def test_counters_are_read_as_rates_or_increases() -> None:
    for query in dashboard_queries() + alert_queries():
        for name in metric_names(query.expr):
            if not re.search(r"_(total|bucket|sum|count)$", name):
                continue
            for match in re.finditer(rf"(?<![\w:]){re.escape(name)}(?![\w:])", query.expr):
                assert inside_rate(query.expr, match.start()), (
                    f"{query.where}: counter {name} outside rate()/increase(): {query.expr}"
                )


def panels_reading(metric: str) -> list[tuple[dict[str, Any], str]]:
    """(panel, expression) for every panel query that reads the metric."""
    return [
        (panel, target["expr"])
        for panel in dashboard_panels()
        for target in panel.get("targets", [])
        if metric in metric_names(target.get("expr", ""))
    ]


def grouping_labels(expr: str) -> list[str]:
    labels: list[str] = []
    for group in re.findall(r"\bby\s*\(([^()]*)\)", expr):
        labels += [label.strip() for label in group.split(",") if label.strip()]
    return labels


def inside_rate(expr: str, index: int) -> bool:
    """Whether the text at ``index`` is inside a rate(), irate() or increase() call."""
    depth = 0
    for position in range(index - 1, -1, -1):
        char = expr[position]
        if char == ")":
            depth += 1
        elif char == "(":
            if depth:
                depth -= 1
                continue
            function = re.search(r"(\w+)\s*$", expr[:position])
            if function and function.group(1) in {"rate", "irate", "increase"}:
                return True
    return False


@pytest.mark.parametrize(
    ("subject", "metric", "by"),
    [
        ("input throughput per topic", "triggerstream_events_total", {"topic"}),
        (
            "invalid (DLQ) rate by topic and reason",
            "triggerstream_events_invalid_total",
            {"topic", "reason"},
        ),
        ("duplicate rate", "triggerstream_events_duplicate_total", set()),
        ("triggers by rule and channel", "triggerstream_triggers_total", {"rule", "channel"}),
        ("decisions by outcome", "triggerstream_decisions_total", {"outcome"}),
        ("consumer lag by topic", "triggerstream_consumer_lag", {"topic"}),
        (
            "conversions by rule, variant and group",
            "triggerstream_attributions_total",
            {"rule", "variant", "group"},
        ),
        (
            "attributed revenue by rule and currency",
            "triggerstream_attributed_revenue_total",
            {"rule", "currency"},
        ),
        ("users tracked", "triggerstream_users_tracked", set()),
        ("rules reloads by result", "triggerstream_rules_reloads_total", {"result"}),
        ("worker up", "up", set()),
        ("worker ready", "triggerstream_ready", set()),
    ],
)
def test_the_dashboard_shows(subject: str, metric: str, by: set[str]) -> None:
    found = panels_reading(metric)
    assert found, f"no panel shows {subject} ({metric})"
    assert any(set(grouping_labels(expr)) == by for _, expr in found), (
        f"no panel shows {subject}: {metric} by {sorted(by)}; found {[e for _, e in found]}"
    )


def outcomes_selected(expr: str) -> set[str]:
    """The decision outcomes an expression's ``outcome`` matchers let through."""
    selected = set(get_args(Outcome))
    for operator, value in re.findall(r'\boutcome\s*(=~|!~|!=|=)\s*"([^"]*)"', expr):
        for outcome in list(selected):
            matches = (
                re.fullmatch(value, outcome) is not None if "~" in operator else outcome == value
            )
            if matches == operator.startswith("!"):
                selected.discard(outcome)
    return selected


def test_the_dashboard_shows_suppressions_by_reason() -> None:
    by_reason = [
        (panel["title"], expr)
        for panel, expr in panels_reading("triggerstream_decisions_total")
        if "reason" in grouping_labels(expr)
    ]
    assert any("suppressed" in outcomes_selected(expr) for _, expr in by_reason), (
        "no panel shows suppressed decisions by reason"
    )
    for title, expr in by_reason:
        # An emitted decision has no reason: counted here it would show as a blank one.
        assert "emitted" not in outcomes_selected(expr), f"{title}: {expr}"


@pytest.mark.parametrize(
    ("subject", "metric", "quantile"),
    [
        ("trigger latency p50", "triggerstream_trigger_latency_seconds_bucket", "0.5"),
        ("trigger latency p99", "triggerstream_trigger_latency_seconds_bucket", "0.99"),
        ("event processing p99", "triggerstream_event_processing_seconds_bucket", "0.99"),
    ],
)
def test_the_dashboard_shows_quantiles(subject: str, metric: str, quantile: str) -> None:
    found = [
        expr
        for _, expr in panels_reading(metric)
        if re.search(rf"histogram_quantile\(\s*{re.escape(quantile)}\s*,", expr)
        and "le" in grouping_labels(expr)
    ]
    assert found, f"no panel shows {subject}: histogram_quantile({quantile}, ... by (le) ...)"


# --- the metrics the dashboard and the alerts read ----------------------------------


def declared_series_names() -> set[str]:
    """Every series name the worker's registry can expose (worker metrics, process_*,
    python_*), whether or not it has samples yet."""
    names: set[str] = set()
    for family in REGISTRY.collect():
        suffixes = {
            "counter": ("_total", "_created"),
            "histogram": ("_bucket", "_sum", "_count", "_created"),
            "summary": ("_sum", "_count", "_created", ""),
            "info": ("_info",),
        }.get(family.type, ("",))
        names |= {family.name + suffix for suffix in suffixes}
        names |= {sample.name for sample in family.samples}
    return names


def test_every_metric_used_is_one_the_worker_declares() -> None:
    used = metric_names_used()
    assert "triggerstream_trigger_latency_seconds_bucket" in used
    assert "triggerstream_events_total" in used
    assert used & PROMETHEUS_BUILTINS == set()
    assert used - declared_series_names() == set()


def test_metric_names_reads_names_off_promql() -> None:
    assert metric_names(
        'histogram_quantile(0.99, sum by (le) (rate(a_bucket{job="x", le!~"1e3"}[5m])))'
    ) == {"a_bucket"}
    assert metric_names(
        "sum(rate(a_total[1h] offset 1d)) by (rule) > 2e1 unless on(rule) group_left b_total"
    ) == {"a_total", "b_total"}
    assert metric_names('up{job="triggerstream"} == 0 and on() vector(1)') == {"up"}
    assert metric_names('c{reason="a{b}", instance=~"$instance"}[$__rate_interval]') == {"c"}
    assert metric_names("deriv(sum by (topic) (d)[15m:1m]) > 0 and bool e") == {"d", "e"}
    assert metric_family("triggerstream_trigger_latency_seconds_bucket") == (
        "triggerstream_trigger_latency_seconds"
    )
    assert metric_family("triggerstream_events_total") == "triggerstream_events_total"
    assert substitute_grafana_variables('x{i=~"${instance}"}[$__rate_interval]') == (
        'x{i=~".*"}[1m]'
    )


# --- Grafana provisioning ------------------------------------------------------------


def provisioned_datasource() -> dict[str, Any]:
    sources = load_yaml(GRAFANA_PROVISIONING / "datasources" / "prometheus.yaml")["datasources"]
    assert len(sources) == 1
    source: dict[str, Any] = sources[0]
    assert source["type"] == "prometheus"
    return source


def container_mounts(service: dict[str, Any]) -> dict[str, str]:
    """Container path -> host path (relative to the repository) of bind mounts."""
    mounts: dict[str, str] = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            if volume.get("type") == "bind":
                mounts[volume["target"]] = volume["source"]
            continue
        source, target = volume.split(":")[:2]
        if source.startswith((".", "/")):
            mounts[target] = source
    return mounts


def host_path(container_path: str, service: dict[str, Any]) -> Path | None:
    """The repository path a container path of a service comes from, or None."""
    for target, source in container_mounts(service).items():
        inside = PurePosixPath(container_path)
        if inside == PurePosixPath(target) or PurePosixPath(target) in inside.parents:
            return (ROOT / source / inside.relative_to(target)).resolve()
    return None


def test_grafana_mounts_the_provisioning_and_the_dashboard(compose: dict[str, Any]) -> None:
    grafana = compose["services"]["grafana"]
    environment = env_of(grafana)
    provisioning = environment.get("GF_PATHS_PROVISIONING", "/etc/grafana/provisioning")
    assert host_path(provisioning, grafana) == GRAFANA_PROVISIONING.resolve()
    providers = load_yaml(GRAFANA_PROVISIONING / "dashboards" / "triggerstream.yaml")
    [provider] = providers["providers"]
    dashboards = host_path(provider["options"]["path"], grafana)
    assert dashboards is not None, "the dashboards provider's path is not mounted"
    assert dashboards == DASHBOARD.parent.resolve()
    home = environment.get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")
    if home is not None:
        assert host_path(home, grafana) == DASHBOARD.resolve()
    assert environment.get("GF_AUTH_ANONYMOUS_ENABLED") == "true"
    assert environment.get("GF_AUTH_ANONYMOUS_ORG_ROLE") == "Viewer"


def test_the_datasource_is_the_compose_prometheus(compose: dict[str, Any]) -> None:
    url = provisioned_datasource()["url"]
    match = re.fullmatch(r"http://([\w.-]+):(\d+)/?", url)
    assert match, url
    assert match.group(1) in compose["services"]
    assert match.group(2) == "9090"
    assert dashboard_panels()[0]["datasource"]["uid"] == provisioned_datasource()["uid"]


def test_prometheus_mounts_its_config_and_rules(compose: dict[str, Any]) -> None:
    prometheus = compose["services"]["prometheus"]
    flags = dict(
        arg.removeprefix("--").split("=", 1) for arg in prometheus.get("command", []) if "=" in arg
    )
    config = flags.get("config.file", "/etc/prometheus/prometheus.yml")
    assert host_path(config, prometheus) == PROMETHEUS_CONFIG.resolve()
    for rule_file in load_yaml(PROMETHEUS_CONFIG)["rule_files"]:
        inside = PurePosixPath(config).parent / rule_file
        assert host_path(str(inside), prometheus) == ALERTS.resolve()


# --- docker-compose.yml --------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = load_yaml(COMPOSE_FILE)
    return loaded


def env_of(service: dict[str, Any]) -> dict[str, str]:
    environment = service.get("environment", {})
    if isinstance(environment, list):
        return dict(item.split("=", 1) for item in environment)
    return {key: str(value) for key, value in environment.items()}


def is_duration(value: object) -> bool:
    return isinstance(value, str) and bool(
        re.fullmatch(r"(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+", value)
    )


def test_the_compose_file_follows_the_compose_specification(compose: dict[str, Any]) -> None:
    schema = need(compose_schema)
    checker = jsonschema.FormatChecker()
    checker.checks("duration")(is_duration)
    validator = jsonschema.Draft201909Validator(schema, format_checker=checker)
    problems = [
        f"{'.'.join(map(str, error.absolute_path)) or '(top)'}: {error.message}"
        for error in validator.iter_errors(compose)
    ]
    assert problems == []


def test_the_compose_schema_check_catches_mistakes(compose: dict[str, Any]) -> None:
    # The check above is only worth something if the schema rejects what Docker would.
    schema = need(compose_schema)
    checker = jsonschema.FormatChecker()
    checker.checks("duration")(is_duration)
    validator = jsonschema.Draft201909Validator(schema, format_checker=checker)
    mistakes = {
        "a misspelt key": ("worker-1", "depend_on", {"topics": {"condition": "service_started"}}),
        "a bad duration": ("kafka", "healthcheck", {"test": ["CMD", "true"], "interval": "10 x"}),
        "an unknown condition": ("worker-2", "depends_on", {"topics": {"condition": "done"}}),
        "a list for a string": ("topics", "image", ["triggerstream"]),
    }
    for mistake, (service, key, value) in mistakes.items():
        broken = load_yaml(COMPOSE_FILE)
        broken["services"][service][key] = value
        assert list(validator.iter_errors(broken)), f"the schema let {mistake} through"


def test_the_services_are_there(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in ("kafka", "topics", *WORKERS, "prometheus", "grafana"):
        assert name in services, name
        assert not services[name].get("profiles"), f"{name} should start without a profile"
    assert services["loadgen"].get("profiles") == ["load"]
    for name in CLUSTER_SERVICES:
        assert services[name].get("profiles") == ["cluster"], name


def subcommand(args: list[str]) -> tuple[click.Command, list[str], str]:
    """The click command the arguments name, the arguments left for it, and its path."""
    command: click.Command = main
    path = ["triggerstream"]
    rest = list(args)
    while isinstance(command, click.Group) and rest and not rest[0].startswith("-"):
        found = command.get_command(click.Context(command), rest[0])
        assert found is not None, f"`{' '.join(path)}` has no subcommand {rest[0]!r}"
        command = found
        path.append(rest.pop(0))
    return command, rest, " ".join(path)


@pytest.mark.parametrize("name", TRIGGERSTREAM_IMAGE_SERVICES)
def test_each_triggerstream_service_runs_a_real_command(compose: dict[str, Any], name: str) -> None:
    service = compose["services"][name]
    assert service.get("build") in (".", {"context": "."}), "built from this repository"
    assert dockerfile_entrypoint() == ["triggerstream"]
    args = service["command"]
    assert isinstance(args, list)
    assert all(isinstance(a, str) for a in args)
    command, rest, path = subcommand(args)
    assert not isinstance(command, click.Group), f"`{path}` needs a subcommand"
    assert command.callback is not None
    try:
        command.make_context(path, rest)  # parses the options as the command would
    except click.UsageError as error:
        pytest.fail(f"{name}: `{path} {' '.join(rest)}`: {error.format_message()}")
    accepted = {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}
    for arg in rest:
        if arg.startswith("--"):
            assert arg.split("=", 1)[0] in accepted, f"{name}: `{path}` has no option {arg}"


@pytest.mark.parametrize("name", TRIGGERSTREAM_IMAGE_SERVICES)
def test_triggerstream_services_set_only_settings(compose: dict[str, Any], name: str) -> None:
    environment = env_of(compose["services"][name])
    fields = set(Settings.model_fields)
    values: dict[str, Any] = {}
    for variable, value in environment.items():
        assert variable.startswith("TRIGGERSTREAM_"), f"{name}: {variable} is not a setting"
        field = variable.removeprefix("TRIGGERSTREAM_").lower()
        assert field in fields, f"{name}: {variable} is not a setting (settings.py)"
        values[field] = value
    Settings(**values)  # the values are valid settings


def advertised_by(compose: dict[str, Any], broker: str) -> set[str]:
    """The host:port addresses a Kafka service advertises."""
    listeners = env_of(compose["services"][broker])["KAFKA_ADVERTISED_LISTENERS"]
    return {listener.split("://", 1)[1] for listener in listeners.split(",")}


def test_the_triggerstream_services_reach_the_compose_kafka(compose: dict[str, Any]) -> None:
    for name in TRIGGERSTREAM_IMAGE_SERVICES:
        service = compose["services"][name]
        brokers = CLUSTER_BROKERS if "cluster" in service.get("profiles", []) else ("kafka",)
        advertised = set().union(*(advertised_by(compose, broker) for broker in brokers))
        bootstrap = env_of(service)["TRIGGERSTREAM_KAFKA_BOOTSTRAP"].split(",")
        for address in bootstrap:
            assert address in advertised, f"{name}: {address} is not advertised by {brokers}"
        if len(brokers) > 1:
            assert len(bootstrap) == len(brokers), f"{name}: bootstrap from every broker"


def test_every_mounted_host_path_exists(compose: dict[str, Any]) -> None:
    named = set(compose.get("volumes") or {})
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume["source"] if isinstance(volume, dict) else volume.split(":")[0]
            if source.startswith((".", "/")):
                assert (ROOT / source).exists(), f"{name}: {source} does not exist"
            else:
                assert source in named, f"{name}: volume {source} is not declared"


def test_the_workers_read_the_mounted_rules_file(compose: dict[str, Any]) -> None:
    from triggerstream.rules.load import load_rules

    for name in (*WORKERS, *CLUSTER_WORKERS):
        service = compose["services"][name]
        args = service["command"]
        rules = args[args.index("--rules") + 1]
        source = host_path(rules, service)
        assert source is not None, f"{name}: {rules} is not mounted"
        assert source.is_file(), f"{name}: {rules} is not mounted"
        load_rules(source)  # a valid rules file: the worker would refuse to start otherwise


def test_each_worker_keeps_its_state_in_its_own_volume(compose: dict[str, Any]) -> None:
    image_env = dockerfile_env()
    volumes = []
    for name in (*WORKERS, *CLUSTER_WORKERS):
        service = compose["services"][name]
        data_dir = env_of(service).get("TRIGGERSTREAM_DATA_DIR") or image_env.get(
            "TRIGGERSTREAM_DATA_DIR"
        )
        assert data_dir, f"{name}: no TRIGGERSTREAM_DATA_DIR"
        mounted = [
            v.split(":")[0] for v in service.get("volumes", []) if v.split(":")[1] == data_dir
        ]
        assert len(mounted) == 1, f"{name}: {data_dir} is not a volume"
        volumes += mounted
    assert len(set(volumes)) == len(volumes), "workers must not share a data volume"


def web_port(service: dict[str, Any]) -> int:
    args = service.get("command", [])
    if "--web-port" in args:
        return int(args[args.index("--web-port") + 1])
    return int(env_of(service).get("TRIGGERSTREAM_WEB_PORT", DEFAULT_WEB_PORT))


def test_the_workers_start_after_kafka_and_the_topics(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert "healthcheck" in services["kafka"]
    assert services["topics"]["command"][:2] == ["topics", "create"]
    assert services["topics"]["depends_on"]["kafka"]["condition"] == "service_healthy"
    for name in (*WORKERS, "loadgen"):
        depends = services[name]["depends_on"]
        assert depends["topics"]["condition"] == "service_completed_successfully", name
    for name in WORKERS:
        assert services[name]["command"][0] == "worker"
        assert not services[name].get("healthcheck", {}).get("disable"), (
            f"{name}: the image's /healthz check should stay on for workers"
        )


def test_kafka_is_apache_kafka_in_kraft_mode(compose: dict[str, Any]) -> None:
    kafka = compose["services"]["kafka"]
    image, _, tag = kafka["image"].partition(":")
    assert image == "apache/kafka"
    assert tag == KAFKA_VERSION, "compose should run the Kafka version the tests run on"
    assert int(tag.split(".")[0]) >= 4
    environment = env_of(kafka)
    assert set(environment["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert not any("ZOOKEEPER" in variable for variable in environment)
    node = environment["KAFKA_NODE_ID"]
    controller = environment["KAFKA_CONTROLLER_LISTENER_NAMES"]
    listeners = dict(
        listener.split("://", 1) for listener in environment["KAFKA_LISTENERS"].split(",")
    )
    assert controller in listeners
    controller_port = listeners[controller].rsplit(":", 1)[1]
    voters = environment.get("KAFKA_CONTROLLER_QUORUM_VOTERS")
    if voters is not None:
        assert voters == f"{node}@kafka:{controller_port}"
    else:
        assert environment["KAFKA_CONTROLLER_QUORUM_BOOTSTRAP_SERVERS"].endswith(controller_port)
    protocols = dict(
        pair.split(":") for pair in environment["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(",")
    )
    assert set(listeners) <= set(protocols)
    advertised = dict(
        a.split("://", 1) for a in environment["KAFKA_ADVERTISED_LISTENERS"].split(",")
    )
    assert set(advertised) <= set(listeners) - {controller}
    assert environment["KAFKA_INTER_BROKER_LISTENER_NAME"] in advertised
    assert advertised["PLAINTEXT"] == "kafka:9092"
    assert kafka.get("hostname", "kafka") == "kafka"
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", environment["CLUSTER_ID"])


def test_the_cluster_profile_is_three_kraft_brokers_that_are_also_the_quorum(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    single = env_of(services["kafka"])
    nodes = {name: env_of(services[name]) for name in CLUSTER_BROKERS}
    assert {env["CLUSTER_ID"] for env in nodes.values()} != {single["CLUSTER_ID"]}
    assert len({env["CLUSTER_ID"] for env in nodes.values()}) == 1, "one cluster id"
    assert len({env["KAFKA_NODE_ID"] for env in nodes.values()}) == 3, "distinct node ids"
    voters = {}
    for name, environment in nodes.items():
        assert services[name]["image"] == services["kafka"]["image"], name
        assert services[name].get("hostname", name) == name
        assert set(environment["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
        assert not any("ZOOKEEPER" in variable for variable in environment)
        listeners = dict(
            listener.split("://", 1) for listener in environment["KAFKA_LISTENERS"].split(",")
        )
        controller = environment["KAFKA_CONTROLLER_LISTENER_NAMES"]
        voters[environment["KAFKA_NODE_ID"]] = f"{name}:{listeners[controller].rsplit(':', 1)[1]}"
        advertised = dict(
            a.split("://", 1) for a in environment["KAFKA_ADVERTISED_LISTENERS"].split(",")
        )
        assert advertised["PLAINTEXT"] == f"{name}:9092"
        assert set(advertised) <= set(listeners) - {controller}
        assert environment["KAFKA_INTER_BROKER_LISTENER_NAME"] in advertised
        assert name in str(services[name]["healthcheck"]["test"]), "checks itself"
    expected_voters = ",".join(f"{node}@{address}" for node, address in sorted(voters.items()))
    for name, environment in nodes.items():
        assert environment["KAFKA_CONTROLLER_QUORUM_VOTERS"] == expected_voters, name
    host_ports = [port for name in CLUSTER_BROKERS for port in services[name]["ports"]]
    host_ports += services["kafka"]["ports"]
    assert len(set(host_ports)) == len(host_ports), "each broker on its own host port"
    assert all(port.startswith("127.0.0.1:") for port in host_ports)
    data = [v.split(":")[0] for name in CLUSTER_BROKERS for v in services[name]["volumes"]]
    assert len(set(data)) == 3, "each broker keeps its own log"


def test_the_cluster_profile_replicates_every_topic_three_times_with_min_isr_two(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    for name in CLUSTER_BROKERS:
        environment = env_of(services[name])
        for variable in (
            "KAFKA_DEFAULT_REPLICATION_FACTOR",
            "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
            "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
            "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR",
        ):
            assert environment[variable] == "3", f"{name}: {variable}"
        for variable in (
            "KAFKA_MIN_INSYNC_REPLICAS",
            "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR",
            "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_MIN_ISR",
        ):
            assert environment[variable] == "2", f"{name}: {variable}"
    # topics create (and the workers' changelogs) ask for three replicas themselves.
    for name in ("cluster-topics", *CLUSTER_WORKERS):
        assert env_of(services[name])["TRIGGERSTREAM_REPLICATION_FACTOR"] == "3", name
    topics = services["cluster-topics"]
    assert topics["command"][:2] == ["topics", "create"]
    for broker in CLUSTER_BROKERS:
        assert topics["depends_on"][broker]["condition"] == "service_healthy"
    for name in CLUSTER_WORKERS:
        assert services[name]["command"][0] == "worker"
        depends = services[name]["depends_on"]
        assert depends["cluster-topics"]["condition"] == "service_completed_successfully"
    ports = [port for service in services.values() for port in service.get("ports", [])]
    assert len(set(ports)) == len(ports), "a host port published twice"


# --- Dockerfile ----------------------------------------------------------------------


def instructions(keyword: str) -> list[Instruction]:
    return [i for i in dockerfile_instructions() if i.keyword == keyword]


def dockerfile_entrypoint() -> list[str] | None:
    [entrypoint] = instructions("ENTRYPOINT")
    return entrypoint.exec_form()


def dockerfile_env() -> dict[str, str]:
    environment: dict[str, str] = {}
    for instruction in instructions("ENV"):
        for key, value in re.findall(r'(\w+)=("[^"]*"|\S+)', instruction.arguments):
            environment[key] = value.strip('"')
    return environment


def pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def test_the_base_image_is_a_python_the_project_supports() -> None:
    [base] = instructions("FROM")
    match = re.fullmatch(r"python:(3\.\d+)(-[\w.-]+)?", base.arguments)
    assert match, base.arguments
    assert match.group(1) in SpecifierSet(pyproject()["project"]["requires-python"])
    assert match.group(1) == "3.11"


def test_the_entrypoint_is_the_console_script() -> None:
    scripts = pyproject()["project"]["scripts"]
    assert scripts.get("triggerstream") == "triggerstream.cli:main"
    assert dockerfile_entrypoint() == ["triggerstream"]


def dockerignored(path: str) -> bool:
    """Whether .dockerignore leaves a path (relative to the repository) out of the build
    context: the last pattern matching it or a parent directory decides."""
    parts = PurePosixPath(path).parts
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for raw in DOCKERIGNORE.read_text(encoding="utf-8").splitlines():
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negated = pattern.startswith("!")
        pattern = pattern.removeprefix("!").strip("/")
        for candidate in candidates:
            if fnmatch.fnmatchcase(candidate, pattern) or (
                pattern.startswith("**/")
                and fnmatch.fnmatchcase(PurePosixPath(candidate).name, pattern[3:])
            ):
                ignored = not negated
                break
    return ignored


def copied_sources() -> list[str]:
    sources: list[str] = []
    for instruction in instructions("COPY") + instructions("ADD"):
        words = [w for w in instruction.arguments.split() if not w.startswith("--")]
        assert "--from" not in instruction.arguments, "no multi-stage copies expected"
        sources += words[:-1]
    return sources


def test_every_copy_source_exists_in_the_build_context() -> None:
    sources = copied_sources()
    assert sources
    for source in sources:
        assert (ROOT / source).exists(), f"COPY {source}: no such path"
        assert not dockerignored(source), f"COPY {source}: left out by .dockerignore"


def test_the_build_context_has_what_the_wheel_needs() -> None:
    project = pyproject()
    wheel = project["tool"]["hatch"]["build"]["targets"]["wheel"]
    needed = [
        "pyproject.toml",
        project["project"]["readme"],
        *wheel["packages"],
        *wheel.get("force-include", {}),
    ]
    sources = [PurePosixPath(s) for s in copied_sources()]
    for path in needed:
        inside = PurePosixPath(path)
        assert any(inside == s or s in inside.parents for s in sources), (
            f"the wheel needs {path}, which the Dockerfile does not copy"
        )
        assert not dockerignored(path), f"the wheel needs {path}, left out by .dockerignore"


def test_the_dockerignore_keeps_local_state_out() -> None:
    for path in (".git", ".venv", ".venv-ci", ".cache/prometheus", "src/x/__pycache__"):
        assert dockerignored(path), path
    for path in ("src/triggerstream/cli/__init__.py", "topics/topics.yaml", "README.md"):
        assert not dockerignored(path), path


def test_the_image_runs_as_an_unprivileged_user_with_a_data_volume() -> None:
    [user] = instructions("USER")
    assert user.arguments not in {"root", "0", "0:0"}
    data_dir = dockerfile_env()["TRIGGERSTREAM_DATA_DIR"]
    assert "data_dir" in Settings.model_fields
    [volume] = instructions("VOLUME")
    assert data_dir in (volume.exec_form() or volume.arguments.split())
    for variable in dockerfile_env():
        if variable.startswith("TRIGGERSTREAM_"):
            assert variable.removeprefix("TRIGGERSTREAM_").lower() in Settings.model_fields


def test_the_image_exposes_the_web_port() -> None:
    exposed = {p.split("/")[0] for i in instructions("EXPOSE") for p in i.arguments.split()}
    assert str(DEFAULT_WEB_PORT) in exposed


def healthcheck_command() -> list[str]:
    [check] = instructions("HEALTHCHECK")
    command = check.arguments[check.arguments.index("CMD") + len("CMD") :].strip()
    words = Instruction("CMD", command, check.line).exec_form()
    assert words is not None, "HEALTHCHECK CMD in exec form"
    return words


class _Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/healthz" else 404)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def health_server() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_the_healthcheck_asks_healthz_on_the_web_port(health_server: int) -> None:
    command = healthcheck_command()
    assert command[0] == "python"  # slim images have no curl
    assert "/healthz" in " ".join(command)
    assert f"'{DEFAULT_WEB_PORT}'" in " ".join(command) or str(DEFAULT_WEB_PORT) in command[-1]

    def run(port: int) -> int:
        environment = {"TRIGGERSTREAM_WEB_PORT": str(port), "PATH": "/usr/bin:/bin"}
        return subprocess.run(
            [sys.executable, *command[1:]],
            env=environment,
            capture_output=True,
            timeout=30,
            check=False,
        ).returncode

    assert run(health_server) == 0, "healthy worker reported unhealthy"
    assert run(free_port()) != 0, "nothing listening, yet reported healthy"


# --- Kubernetes (deploy/kubernetes) --------------------------------------------------

# The oldest Kubernetes the manifests are said to suit (deploy/README.md), and the newest
# kubernetes-validate knows.
KUBERNETES_VERSIONS = ("1.32.0", "1.37.0")

# Settings and options of docs/contract.md section 17 (rules from a topic), which is being
# built: the manifests use them already. Until the worker has them they must be named in
# section 17; once it has them they are checked as every other setting and option.
PLANNED_SETTINGS = {"rules_from_topic"}
PLANNED_OPTIONS = {"--rules-from-topic"}


def contract_section(number: int) -> str:
    text = (ROOT / "docs" / "contract.md").read_text(encoding="utf-8")
    match = re.search(rf"^## {number}\. .*?(?=^## |\Z)", text, re.MULTILINE | re.DOTALL)
    assert match, f"docs/contract.md has no section {number}"
    return match.group()


def kubernetes_problems(paths: list[Path]) -> list[str]:
    """What kubernetes-validate (strict: unknown fields are errors) finds in the files
    against each of KUBERNETES_VERSIONS; a resource it could not check (no schema for its
    kind and apiVersion, which it only warns about) is a problem too."""
    tool = need(kubernetes_validate)
    versions = [arg for version in KUBERNETES_VERSIONS for arg in ("-k", version)]
    result = subprocess.run(
        [str(tool), "--strict", *versions, *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    lines = (result.stdout + result.stderr).splitlines()
    problems = [line for line in lines if line.strip() and not line.startswith("INFO ")]
    passed = set()
    for line in lines:
        match = re.fullmatch(r"INFO (\S+) passed for resource (\S+) against version ([\d.]+)", line)
        if match:
            passed.add(match.groups())
    for path in paths:
        with path.open(encoding="utf-8") as file:
            for document in (d for d in yaml.safe_load_all(file) if d):
                name = f"{document['kind'].lower()}/{document['metadata']['name']}"
                for version in KUBERNETES_VERSIONS:
                    minor = version.rsplit(".", 1)[0]
                    if (str(path), name, minor) not in passed:
                        problems.append(f"{path.name}: {name} not validated against {minor}")
    if result.returncode != 0 and not problems:
        problems.append(f"kubernetes-validate exited {result.returncode}")
    return problems


def test_the_kubernetes_manifests_pass_kubernetes_validate() -> None:
    assert kubernetes_problems(kubernetes_files()) == []


def test_the_kubernetes_schema_check_catches_mistakes(tmp_path: Path) -> None:
    # The check above is only worth something if it rejects what the API server would.
    def statefulset() -> dict[str, Any]:
        [found] = [r for r in kubernetes_resources() if r["kind"] == "StatefulSet"]
        return found

    def pod(resource: dict[str, Any]) -> dict[str, Any]:
        spec: dict[str, Any] = resource["spec"]["template"]["spec"]
        return spec

    def misspelt(resource: dict[str, Any]) -> None:
        pod(resource)["terminationGracePeriodSecond"] = 30

    def string_for_a_number(resource: dict[str, Any]) -> None:
        pod(resource)["containers"][0]["livenessProbe"]["periodSeconds"] = "ten"

    def no_image_name(resource: dict[str, Any]) -> None:
        del pod(resource)["containers"][0]["name"]

    def removed_api(resource: dict[str, Any]) -> None:
        resource["apiVersion"] = "apps/v1beta2"  # gone since Kubernetes 1.16

    for mistake in (misspelt, string_for_a_number, no_image_name, removed_api):
        broken = statefulset()
        mistake(broken)
        path = tmp_path / f"{mistake.__name__}.yaml"
        path.write_text(yaml.safe_dump(broken), encoding="utf-8")
        assert kubernetes_problems([path]), f"kubernetes-validate let {mistake.__name__} through"


def test_kubernetes_validate_is_the_pinned_version_and_installed_by_the_scripts() -> None:
    tool = need(kubernetes_validate)
    pin = kubernetes_validate_pin()
    version = subprocess.run(
        [str(tool), "--version"], capture_output=True, text=True, timeout=60, check=True
    ).stdout.strip()
    assert version == pin, f"{tool} is {version}; run scripts/fetch-kubernetes-validate"
    readme = (DEPLOY / "README.md").read_text(encoding="utf-8")
    assert f"kubernetes-validate {pin}" in readme, "deploy/README.md should name the version"
    for script in (ROOT / "scripts" / "test", ROOT / ".ci" / "run"):
        assert "scripts/fetch-kubernetes-validate" in script.read_text(encoding="utf-8"), script


def test_the_kustomization_ties_every_manifest_together() -> None:
    listed = kustomization()["resources"]
    present = sorted(p.name for p in KUBERNETES.glob("*.yaml") if p != KUSTOMIZATION)
    assert sorted(listed) == present
    assert len(set(listed)) == len(listed)
    [namespace] = [r for r in kubernetes_resources() if r["kind"] == "Namespace"]
    assert kustomization()["namespace"] == namespace["metadata"]["name"]
    images = {image["name"] for image in kustomization().get("images", [])}
    for container in containers():
        assert container["image"].split(":")[0] in images, container["name"]


def kubernetes_resource(kind: str) -> dict[str, Any]:
    [found] = [r for r in kubernetes_resources() if r["kind"] == kind]
    return found


def pod_spec(kind: str) -> dict[str, Any]:
    spec: dict[str, Any] = kubernetes_resource(kind)["spec"]["template"]["spec"]
    return spec


def containers() -> list[dict[str, Any]]:
    return [c for kind in ("StatefulSet", "Job") for c in pod_spec(kind)["containers"]]


def worker_container() -> dict[str, Any]:
    found: list[dict[str, Any]] = pod_spec("StatefulSet")["containers"]
    assert len(found) == 1, "one container: the worker"
    return found[0]


def container_environment(container: dict[str, Any]) -> dict[str, str | None]:
    """The container's environment: its ConfigMaps' entries, then its own ``env`` (which
    wins); a value taken from elsewhere (``valueFrom``) is None."""
    config_maps = {
        r["metadata"]["name"]: r.get("data", {})
        for r in kubernetes_resources()
        if r["kind"] == "ConfigMap"
    }
    environment: dict[str, str | None] = {}
    for source in container.get("envFrom", []):
        name = source["configMapRef"]["name"]
        assert name in config_maps, f"{container['name']}: no ConfigMap {name}"
        environment.update({key: str(value) for key, value in config_maps[name].items()})
    for variable in container.get("env", []):
        environment[variable["name"]] = variable.get("value")
    return environment


def container_web_port(container: dict[str, Any]) -> int:
    args = container.get("args", [])
    if "--web-port" in args:
        return int(args[args.index("--web-port") + 1])
    value = container_environment(container).get("TRIGGERSTREAM_WEB_PORT")
    return int(value) if value is not None else DEFAULT_WEB_PORT


def named_port(container: dict[str, Any], port: int | str) -> int:
    """A probe's or service's port: a number, or the name of a container port."""
    if isinstance(port, int):
        return port
    found = [p["containerPort"] for p in container.get("ports", []) if p.get("name") == port]
    assert found, f"{container['name']}: no container port named {port}"
    return int(found[0])


def test_the_probes_ask_health_and_readiness_on_the_web_port() -> None:
    container = worker_container()
    web = container_web_port(container)
    assert [p["containerPort"] for p in container["ports"]] == [web]
    paths = {"livenessProbe": "/healthz", "readinessProbe": "/readyz", "startupProbe": "/healthz"}
    for probe, path in paths.items():
        if probe == "startupProbe" and probe not in container:
            continue
        check = container[probe]["httpGet"]
        assert check["path"] == path, probe
        assert named_port(container, check["port"]) == web, probe


def test_the_data_dir_is_the_volume_each_worker_claims() -> None:
    statefulset = kubernetes_resource("StatefulSet")
    container = worker_container()
    data_dir = container_environment(container).get("TRIGGERSTREAM_DATA_DIR")
    assert data_dir, "the worker should say where its state goes"
    mounts = [m for m in container["volumeMounts"] if m["mountPath"] == data_dir]
    assert len(mounts) == 1, f"{data_dir} is not a volume mount"
    assert not mounts[0].get("readOnly")
    claims = {t["metadata"]["name"]: t["spec"] for t in statefulset["spec"]["volumeClaimTemplates"]}
    assert mounts[0]["name"] in claims, "the state must be on a claimed volume, one per worker"
    claim = claims[mounts[0]["name"]]
    assert claim["accessModes"] == ["ReadWriteOnce"]
    assert claim["resources"]["requests"]["storage"]
    pod_volumes = {v["name"] for v in pod_spec("StatefulSet").get("volumes", [])}
    assert mounts[0]["name"] not in pod_volumes, "a pod volume would hide the claim"
    # The image's data volume and user: the claimed volume is writable by that user.
    assert data_dir == dockerfile_env()["TRIGGERSTREAM_DATA_DIR"]
    [user] = instructions("USER")
    uid, _, gid = user.arguments.partition(":")
    security = pod_spec("StatefulSet")["securityContext"]
    assert security["runAsNonRoot"] is True
    assert str(security["runAsUser"]) == uid
    assert str(security["fsGroup"]) == (gid or uid)


def test_the_scrape_annotations_name_the_metrics_port_and_path() -> None:
    annotations = kubernetes_resource("StatefulSet")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(container_web_port(worker_container()))
    assert annotations["prometheus.io/path"] == "/metrics"


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(key) == value for key, value in selector.items())


def test_the_disruption_budget_and_the_service_select_the_workers_only() -> None:
    statefulset = kubernetes_resource("StatefulSet")
    worker_labels = statefulset["spec"]["template"]["metadata"]["labels"]
    job_labels = kubernetes_resource("Job")["spec"]["template"]["metadata"]["labels"]
    assert selects(statefulset["spec"]["selector"]["matchLabels"], worker_labels)

    budget = kubernetes_resource("PodDisruptionBudget")
    assert budget["apiVersion"] == "policy/v1"
    assert budget["spec"]["maxUnavailable"] == 1
    assert "minAvailable" not in budget["spec"]
    assert selects(budget["spec"]["selector"]["matchLabels"], worker_labels)
    assert not selects(budget["spec"]["selector"]["matchLabels"], job_labels)

    service = kubernetes_resource("Service")
    assert service["spec"]["clusterIP"] == "None", "a StatefulSet's governing service is headless"
    assert statefulset["spec"]["serviceName"] == service["metadata"]["name"]
    assert selects(service["spec"]["selector"], worker_labels)
    assert not selects(service["spec"]["selector"], job_labels)
    [port] = service["spec"]["ports"]
    web = container_web_port(worker_container())
    assert named_port(worker_container(), port["targetPort"]) == web


def test_the_containers_set_only_settings() -> None:
    section_17 = contract_section(17)
    for container in containers():
        values: dict[str, Any] = {}
        for variable, value in container_environment(container).items():
            assert variable.startswith("TRIGGERSTREAM_"), f"{variable} is not a setting"
            field = variable.removeprefix("TRIGGERSTREAM_").lower()
            if field not in Settings.model_fields:
                assert field in PLANNED_SETTINGS, f"{variable} is not a setting (settings.py)"
                assert field.upper() in section_17, f"{variable}: not in contract section 17"
                continue
            if value is not None:
                values[field] = value
        Settings(**values)  # the values are valid settings


def test_the_containers_run_real_commands() -> None:
    section_17 = contract_section(17)
    for container in containers():
        command, rest, path = subcommand(container["args"])
        assert not isinstance(command, click.Group), f"`{path}` needs a subcommand"
        accepted = {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}
        real = [arg for arg in rest if arg.split("=", 1)[0] not in PLANNED_OPTIONS - accepted]
        for arg in set(rest) - set(real):
            assert arg in section_17, f"{container['name']}: {arg} is not in contract section 17"
        try:
            command.make_context(path, real)  # parses the options as the command would
        except click.UsageError as error:
            pytest.fail(f"{container['name']}: `{path} {' '.join(rest)}`: {error.format_message()}")
        for arg in real:
            if arg.startswith("--"):
                assert arg.split("=", 1)[0] in accepted, f"`{path}` has no option {arg}"


def test_the_workers_take_their_rules_from_the_topic() -> None:
    container = worker_container()
    assert container["args"][0] == "worker"
    assert "--rules-from-topic" in container["args"]
    assert "--rules" not in container["args"]
    environment = container_environment(container)
    assert environment.get("TRIGGERSTREAM_RULES_FROM_TOPIC") == "true"
    assert "TRIGGERSTREAM_RULES" not in environment, "no rules file in a pod"


def test_a_job_creates_the_topics_with_three_replicas() -> None:
    job = kubernetes_resource("Job")
    [container] = pod_spec("Job")["containers"]
    assert container["args"][:2] == ["topics", "create"]
    assert pod_spec("Job")["restartPolicy"] in {"OnFailure", "Never"}
    assert container["image"] == worker_container()["image"]
    assert job["spec"].get("completions", 1) == 1
    for each in containers():
        assert container_environment(each).get("TRIGGERSTREAM_REPLICATION_FACTOR") == "3"
        assert container_environment(each).get("TRIGGERSTREAM_KAFKA_BOOTSTRAP")


def mebibytes(quantity: str) -> float:
    """A Kubernetes memory quantity (binary or decimal suffix) in MiB."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([KMGT]i?)?", quantity)
    assert match, quantity
    number, unit = float(match.group(1)), match.group(2) or ""
    scale = {"": 1, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}
    binary = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
    return number * (binary.get(unit) or scale[unit]) / 2**20


def test_the_worker_has_resources_and_room_above_rocksdb() -> None:
    assert mebibytes("2Gi") == 2048
    assert mebibytes("512M") == pytest.approx(488.28, abs=0.01)
    container = worker_container()
    requests = container["resources"]["requests"]
    limits = container["resources"]["limits"]
    assert requests["cpu"]
    assert requests["memory"]
    assert mebibytes(requests["memory"]) <= mebibytes(limits["memory"])
    rocksdb = container_environment(container).get("TRIGGERSTREAM_ROCKSDB_MEMORY")
    rocksdb_mib = int(rocksdb or Settings.model_fields["rocksdb_memory"].default)
    assert mebibytes(limits["memory"]) >= rocksdb_mib + 512, "RocksDB plus the process"
    assert mebibytes(requests["memory"]) >= rocksdb_mib, "the request should hold RocksDB"
