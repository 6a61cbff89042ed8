"""`triggerstream report` over replay's records: a lift planted in the data comes back."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from tests.engine_support import at, event
from tests.forked_cli import forked_cli
from triggerstream.core.engine import Engine
from triggerstream.core.ids import bucket
from triggerstream.report import difference_interval, wilson
from triggerstream.rules.load import parse_rules

RULES = {
    "offers": {"premium": {"kind": "upsell", "product": "premium", "title": "Go Premium"}},
    "rules": [
        {
            "id": "locked-sso",
            "offer": "premium",
            "channels": ["in_app"],
            "trigger": {"event": {"type": "usage.locked_feature_clicked"}},
        }
    ],
    "policy": {"holdout": {"percent": 30, "salt": "lift-test"}, "attribution": {"window": "7d"}},
    "experiments": [
        {
            "id": "sso-discount",
            "rule": "locked-sso",
            "variants": {
                "control": {"weight": 50},
                "twenty-off": {"weight": 50, "discount_percent": 20},
            },
        }
    ],
}
PLANTED = {"control": 0.20, "twenty-off": 0.30, "holdout": 0.10}


def planted_events(users: int = 1000) -> list[dict[str, Any]]:
    """Every user clicks a locked feature once; a planted share of each group subscribes
    to Premium two days later, the rest buy something else."""
    text = yaml.safe_dump(RULES)
    rule = Engine(parse_rules(text)).by_id["locked-sso"]
    groups: dict[str, list[str]] = {"control": [], "twenty-off": [], "holdout": []}
    lines: list[dict[str, Any]] = []
    for n in range(users):
        user = f"user-{n:04d}"
        held = bucket("lift-test", user) < 3000
        groups["holdout" if held else str(rule.variant(user))].append(user)
        lines += [
            event("usage.session_started", user, at(seconds=n)),
            event("usage.locked_feature_clicked", user, at(seconds=n), feature="sso"),
        ]
    for group, members in groups.items():
        buyers = round(PLANTED[group] * len(members))
        for index, user in enumerate(members):
            if index < buyers:
                lines.append(
                    event(
                        "purchase.subscription_started",
                        user,
                        at(days=2),
                        plan="premium",
                        billing_period="monthly",
                        price=9.99,
                        currency="EUR",
                    )
                )
            else:
                lines.append(
                    event(
                        "purchase.order_completed",
                        user,
                        at(days=2),
                        order_id=f"o-{user}",
                        currency="EUR",
                        total=5,
                        items=[{"sku": "stickers", "price": 5}],
                    )
                )
    return lines


@pytest.fixture(scope="module")
def records(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("lift")
    rules = folder / "rules.yaml"
    rules.write_text(yaml.safe_dump(RULES))
    events = folder / "events.jsonl"
    events.write_bytes(b"\n".join(orjson.dumps(line) for line in planted_events()) + b"\n")
    paths = {
        "rules": rules,
        "decisions": folder / "decisions.jsonl",
        "attributions": folder / "attributions.jsonl",
        "folder": folder,
    }
    result = forked_cli(
        "replay",
        "--rules",
        str(rules),
        str(events),
        "--triggers",
        str(folder / "triggers.jsonl"),
        "--decisions",
        str(paths["decisions"]),
        "--attributions",
        str(paths["attributions"]),
        env=dict(os.environ),
    )
    assert result.returncode == 0, result.stderr
    assert "attributions: " in result.stderr
    return paths


def report(records: dict[str, Path], *args: str) -> Any:
    result = forked_cli(
        "report",
        "--decisions",
        str(records["decisions"]),
        "--attributions",
        str(records["attributions"]),
        *args,
        env=dict(os.environ),
    )
    assert result.returncode == 0, result.stderr
    return result


def test_the_planted_lift_comes_back_within_its_interval(records: dict[str, Path]) -> None:
    rows = orjson.loads(report(records, "--format", "json").stdout)
    overall = {row["variant"]: row for row in rows if row["channel"] == "all"}
    assert set(overall) == {"control", "twenty-off"}
    for variant, row in overall.items():
        planted = PLANTED[variant] - PLANTED["holdout"]
        assert row["lift_low"] <= planted <= row["lift_high"], row
        assert row["lift"] == pytest.approx(planted, abs=0.01)
        assert row["conversion_rate"] == pytest.approx(PLANTED[variant], abs=0.005)
        assert row["holdout_conversions"] / row["holdout_decisions"] == pytest.approx(
            PLANTED["holdout"], abs=0.005
        )
        assert row["revenue"]["EUR"] == pytest.approx(9.99 * row["conversions"])
        assert row["matches"] == row["emitted"] + row["holdout"] + row["suppressed"]
    assert overall["twenty-off"]["lift_low"] > 0, "a 20-point lift on 350 users is clear"


def test_the_table_reads_like_a_report(records: dict[str, Path]) -> None:
    table = report(records).stdout
    assert "lift vs holdout" in table
    assert "twenty-off" in table
    assert "(better)" in table
    assert "EUR" in table


def test_too_small_a_sample_says_so(records: dict[str, Path]) -> None:
    rows = orjson.loads(report(records, "--format", "json", "--min-sample", "5000").stdout)
    overall = [row for row in rows if row["channel"] == "all"]
    assert all(row["lift"] is None for row in overall)
    assert all(row["lift_note"].startswith("not enough data") for row in overall)


def test_csv_has_a_row_per_rule_variant_and_channel(records: dict[str, Path]) -> None:
    lines = report(records, "--format", "csv").stdout.strip().splitlines()
    assert lines[0].startswith("rule,variant,channel,matches,emitted")
    assert sum(",all," in line for line in lines) == 2
    assert sum(",in_app," in line for line in lines) == 2


def test_the_plot_is_a_png(records: dict[str, Path]) -> None:
    chart = records["folder"] / "lift.png"
    report(records, "--plot", str(chart))
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert chart.stat().st_size > 10_000


def test_an_interval_ends_exactly_at_0_and_1_for_none_and_all() -> None:
    # Rounding made wilson(0, 17)'s low end a hair above 0: --plot then failed.
    for total in range(1, 300):
        assert wilson(0, total)[0] == 0
        assert wilson(total, total)[1] == 1


def test_intervals() -> None:
    low, high = wilson(0, 10)
    assert low == 0
    assert 0.25 < high < 0.35
    diff, low, high = difference_interval(30, 100, 10, 100)
    assert diff == pytest.approx(0.20)
    assert 0.08 < low < 0.10
    assert 0.30 < high < 0.32


# --- the wrong kind of file (issue 19) -------------------------------------------------


@pytest.fixture(scope="module")
def every_kind(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A replay's files of every kind: triggers, decisions, attributions, dead letters,
    and the events it read."""
    folder = tmp_path_factory.mktemp("kinds")
    rules = folder / "rules.yaml"
    rules.write_text(yaml.safe_dump(RULES))
    files = {name: folder / f"{name}.jsonl" for name in ("decisions", "attributions", "dlq")}
    outputs = [arg for name, path in files.items() for arg in (f"--{name}", str(path))]
    files["events"] = folder / "events.jsonl"
    files["events"].write_bytes(
        b"".join(orjson.dumps(line) + b"\n" for line in planted_events(200))
        + b'{"topic": "usage-events", "not": "an event"}\n'
    )
    result = forked_cli(
        "replay", "--rules", str(rules), str(files["events"]), *outputs, env=dict(os.environ)
    )
    assert result.returncode == 0, result.stderr
    files["triggers"] = folder / "triggers.jsonl"
    files["triggers"].write_text(result.stdout)
    for name, path in files.items():
        assert path.read_text().strip(), f"the replay wrote no {name}"
    return files


def refused(result: Any) -> str:
    """The one line of a refused report."""
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert result.stdout == ""
    return str(lines[0])


@pytest.mark.parametrize(
    ("given", "as_flag", "looks_like"),
    [
        ("triggers", "--decisions", "a trigger record"),
        ("attributions", "--decisions", "an attribution record"),
        ("dlq", "--decisions", "a dead letter"),
        ("events", "--decisions", "an input event"),
        ("decisions", "--attributions", "a decision record"),
    ],
)
def test_report_on_the_wrong_kind_of_file_names_the_file_the_line_and_both_kinds(
    every_kind: dict[str, Path], given: str, as_flag: str, looks_like: str
) -> None:
    decisions = [] if as_flag == "--decisions" else ["--decisions", str(every_kind["decisions"])]
    result = forked_cli("report", *decisions, as_flag, str(every_kind[given]), env=dict(os.environ))
    line = refused(result)
    expected = "a decision record" if as_flag == "--decisions" else "an attribution record"
    assert line.startswith(f"triggerstream: {every_kind[given]}:1: expected {expected} ("), line
    assert f"but the line looks like {looks_like} (" in line, line


def test_report_names_the_bad_field_of_a_record_of_the_right_kind(
    every_kind: dict[str, Path], tmp_path: Path
) -> None:
    lines = every_kind["decisions"].read_bytes().splitlines()
    broken = orjson.loads(lines[1])
    broken["outcome"] = "maybe"
    decisions = tmp_path / "decisions.jsonl"
    decisions.write_bytes(b"\n".join([lines[0], orjson.dumps(broken), *lines[2:]]) + b"\n")
    line = refused(forked_cli("report", "--decisions", str(decisions), env=dict(os.environ)))
    assert f"{decisions}:2: expected a decision record" in line
    assert "but outcome: input should be 'emitted', " in line
