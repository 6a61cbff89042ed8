"""docs/contract.md, the users' reference, against the code: its tables of event types,
dead-letter codes, decision outcomes, reason codes, settings and metrics, and its
command line, name exactly what the code accepts, decides, reads and registers, so the
reference cannot drift from what runs."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import get_args

import pytest
from prometheus_client import REGISTRY
from prometheus_client.metrics import MetricWrapperBase

from triggerstream.events import EVENT_TYPES
from triggerstream.records import Outcome, SuppressionReason

ROOT = Path(__file__).resolve().parents[2]
CONTRACT = ROOT / "docs" / "contract.md"
SRC = ROOT / "src" / "triggerstream"


def table_under(heading: str, text: str | None = None) -> list[dict[str, str]]:
    """The rows of the first markdown table under ``heading`` (a heading of any level
    with exactly that title, before the next heading), as dicts by column title."""
    lines = (CONTRACT.read_text(encoding="utf-8") if text is None else text).splitlines()
    titles = [n for n, line in enumerate(lines) if re.fullmatch(rf"#+ {re.escape(heading)}", line)]
    assert len(titles) == 1, f"docs/contract.md: expected one heading {heading!r}, found {titles}"
    table: list[list[str]] = []
    for line in lines[titles[0] + 1 :]:
        if line.startswith("#"):
            break
        if line.startswith("|"):
            table.append(_cells(line))
        elif table:
            break
    assert len(table) > 2, f"docs/contract.md: no table under {heading!r}"
    header, rule, *rows = table
    assert all(set(cell) <= set("-: ") for cell in rule), f"not a table header: {rule}"
    for row in rows:
        assert len(row) == len(header), f"under {heading!r}: {row} has not {len(header)} cells"
    return [dict(zip(header, row, strict=True)) for row in rows]


def _cells(line: str) -> list[str]:
    """A table line's cells; a `|` inside backticks belongs to its cell."""
    cells, cell, in_code = [], "", False
    for char in line.strip().removeprefix("|").removesuffix("|"):
        if char == "`":
            in_code = not in_code
        if char == "|" and not in_code:
            cells.append(cell.strip())
            cell = ""
        else:
            cell += char
    cells.append(cell.strip())
    return cells


def name(cell: str) -> str:
    return cell.strip().strip("`")


def names(cell: str) -> tuple[str, ...]:
    return tuple(name(part) for part in cell.split(",") if part.strip())


# --- the helper itself ------------------------------------------------------------------


def test_a_table_is_read_under_its_own_heading_only() -> None:
    text = "\n".join(
        [
            "## A",
            "| x | y |",
            "| --- | --- |",
            "| `a|b` | |",
            "## B",
            "text",
            "| x |",
            "| --- |",
            "| c |",
        ]
    )
    assert table_under("A", text) == [{"x": "`a|b`", "y": ""}]
    assert table_under("B", text) == [{"x": "c"}]
    with pytest.raises(AssertionError):
        table_under("C", text)


# --- the contract's tables --------------------------------------------------------------


def test_the_event_types_table_lists_every_type_the_code_accepts_and_no_other() -> None:
    documented = [(name(row["topic"]), name(row["type"])) for row in table_under("Event types")]
    accepted = {(cls.topic, qualified.split(".", 1)[1]) for qualified, cls in EVENT_TYPES.items()}
    assert len(documented) == len(set(documented)), "a type is listed twice"
    assert set(documented) - accepted == set(), "documented, but the code refuses them"
    assert accepted - set(documented) == set(), "accepted by the code, missing from the doc"


def test_the_event_types_table_names_every_property_and_marks_the_optional_ones() -> None:
    rows = {
        (name(row["topic"]), name(row["type"])): row["properties"]
        for row in table_under("Event types")
    }
    for qualified, cls in EVENT_TYPES.items():
        cell = rows[cls.topic, qualified.split(".", 1)[1]]
        fields = cls.model_fields["properties"].annotation.model_fields  # type: ignore[union-attr]
        for field_name, field in fields.items():
            written = f"`{field_name}?`" if not field.is_required() else f"`{field_name}`"
            assert written in cell, f"{qualified}: the doc should name {written} in {cell!r}"
        if not fields:
            assert cell == "none", f"{qualified} has no properties: {cell!r}"


def test_the_outcomes_table_lists_every_outcome_and_no_other() -> None:
    documented = [name(row["outcome"]) for row in table_under("Outcomes")]
    assert sorted(documented) == sorted(get_args(Outcome))


def test_the_reason_codes_table_lists_every_reason_in_the_order_the_policy_checks() -> None:
    documented = [name(row["reason"]) for row in table_under("Reason codes")]
    assert documented == list(get_args(SuppressionReason))


def registered_metrics() -> dict[str, tuple[str, tuple[str, ...]]]:
    """Every ``triggerstream_*`` metric the worker registers, by its exposed name (a
    counter's with ``_total``), with its type and label names."""
    import triggerstream.worker  # noqa: F401  (registers every metric the worker exposes)

    # prometheus_client has no public accessor for label names: they are read from the
    # metric objects of triggerstream's modules, or from a custom collector's family.
    labels = {
        metric._name: metric._labelnames
        for module_name, module in list(sys.modules.items())
        if module_name.startswith("triggerstream") and module is not None
        for metric in vars(module).values()
        if isinstance(metric, MetricWrapperBase)
    }
    found = {}
    for family in REGISTRY.collect():
        if not family.name.startswith("triggerstream_"):
            continue
        exposed = family.name + ("_total" if family.type == "counter" else "")
        names_ = labels.get(family.name, getattr(family, "_labelnames", ()))
        found[exposed] = (family.type, tuple(names_))
    return found


def test_the_metrics_table_lists_every_registered_metric_with_its_type_and_labels() -> None:
    rows = table_under("Metrics")
    documented = {name(row["metric"]): (name(row["type"]), names(row["labels"])) for row in rows}
    assert len(documented) == len(rows), "a metric is listed twice"
    registered = registered_metrics()
    assert set(documented) - set(registered) == set(), "documented, but not registered"
    assert set(registered) - set(documented) == set(), "registered, missing from the doc"
    assert documented == registered


def section(number: int) -> str:
    """The text of section ``number`` (``## N. ...``) of docs/contract.md."""
    text = CONTRACT.read_text(encoding="utf-8")
    found = re.search(rf"^## {number}\. .*?(?=^## \d+\. |\Z)", text, re.M | re.S)
    assert found, f"docs/contract.md has no section {number}"
    return found.group(0)


def test_the_dead_letter_codes_table_lists_every_code_input_is_refused_with() -> None:
    documented = {name(row["code"]) for row in table_under("Dead-letter reason codes")}
    sources = "\n".join(path.read_text(encoding="utf-8") for path in sorted(SRC.rglob("*.py")))
    raised = set(re.findall(r'InvalidEvent\(\s*"([a-z_]+)"', sources))
    raised |= set(re.findall(r'DeadLetter\.of_value\(\s*[\w.]+,\s*"([a-z_]+)"', sources))
    mapped = re.search(r"_CODES: dict\[str, str\] = \{(.*?)\}", sources, re.S)
    assert mapped is not None
    raised |= set(re.findall(r':\s*"([a-z_]+)"', mapped.group(1)))
    assert {"not_json", "from_future", "tombstone", "output_refused"} <= raised
    assert raised - documented == set(), "refused with in the code, missing from the doc"
    unknown = {code for code in documented if f'"{code}"' not in sources}
    assert unknown == set(), "documented, but no code refuses input with them"


def test_the_command_line_section_names_every_command_and_option() -> None:
    import click

    from triggerstream.cli import main

    text = section(9)
    missing = []

    def walk(command: click.Command, path: tuple[str, ...]) -> None:
        if isinstance(command, click.Group):
            for sub_name, sub in command.commands.items():
                walk(sub, (*path, sub_name))
            return
        if f"`{' '.join(path)}" not in text:
            missing.append(" ".join(path))
        for param in command.params:
            for option in param.opts if isinstance(param, click.Option) else []:
                if option.startswith("--") and option not in text:
                    missing.append(f"{' '.join(path)} {option}")

    walk(main, ())
    assert missing == [], "not in docs/contract.md section 9"


def test_the_settings_table_lists_every_setting_and_no_other() -> None:
    from triggerstream.settings import Settings

    documented = [
        variable for row in table_under("10. Settings") for variable in names(row["variable"])
    ]
    assert len(documented) == len(set(documented)), "a setting is listed twice"
    assert sorted(documented) == sorted(field.upper() for field in Settings.model_fields)
