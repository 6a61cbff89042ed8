"""The suite's two tiers, as a pytest plugin (tests/conftest.py loads it).

- unit: every test in tests/unit. No broker; run once (`scripts/test unit`).
- broker: every other test, marked `broker` here by its folder; run on each broker
  (`scripts/test tansu`, `scripts/test apache`), which TRIGGERSTREAM_TEST_BROKER picks.

The tier is checked, not trusted: a test in tests/unit that asks for the test broker
(`kafka_broker`, or `settings` and `cli_env`, which need it) or carries a broker's marker
stops the run before any test runs. Tests only some brokers can run are marked
(`apache_only`, `own_broker`) and deselected on the others, never skipped: a skipped test
in CI is a defect.
"""

from __future__ import annotations

import os
from collections.abc import Generator
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parent / "unit"
BROKER_KIND = os.environ.get("TRIGGERSTREAM_TEST_BROKER", "tansu")
BROKER_FIXTURE = "kafka_broker"

WHY_NOT_HERE = {
    "apache_only": "deselected here, run on Apache Kafka (apache_only)",
    "own_broker": "deselected here, run in the Tansu pass (own_broker: starts its own broker)",
}

_not_for_this_broker: list[tuple[str, str]] = []


def is_unit(item: pytest.Item) -> bool:
    return UNIT in item.path.parents


def keeps_off_this_broker(item: pytest.Item) -> str | None:
    """The marker that keeps a test off this run's broker, if one does."""
    if BROKER_KIND == "tansu" and item.get_closest_marker("apache_only"):
        return "apache_only"
    if BROKER_KIND != "tansu" and item.get_closest_marker("own_broker"):
        return "own_broker"
    return None


def misplaced(item: pytest.Item) -> str | None:
    """Why a unit test is a broker test, if it is one."""
    if BROKER_FIXTURE in getattr(item, "fixturenames", ()):
        return f"it uses the test broker ({BROKER_FIXTURE})"
    for marker in WHY_NOT_HERE:
        if item.get_closest_marker(marker):
            return f"it is marked {marker}"
    return None


def pytest_report_header() -> str:
    return f"triggerstream test broker: {BROKER_KIND} (TRIGGERSTREAM_TEST_BROKER)"


@pytest.hookimpl(wrapper=True)
def pytest_collection_modifyitems(
    config: pytest.Config, items: list[pytest.Item]
) -> Generator[None, None, None]:
    """Tiers are marked before `-m` selects by them; a broker's tests are deselected after,
    so a unit run does not list what the brokers leave out."""
    wrong = [(item.nodeid, why) for item in items if is_unit(item) and (why := misplaced(item))]
    if wrong:
        raise pytest.UsageError(
            "broker tests in the unit tier (tests/unit needs no broker; move them to "
            "tests/integration):\n" + "\n".join(f"  {nodeid}: {why}" for nodeid, why in wrong)
        )
    for item in items:
        if not is_unit(item):
            item.add_marker(pytest.mark.broker)
    yield
    kept: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        marker = keeps_off_this_broker(item)
        (dropped if marker else kept).append(item)
        if marker:
            _not_for_this_broker.append((marker, item.nodeid))
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for marker, nodeid in _not_for_this_broker:
        terminalreporter.write_line(f"{WHY_NOT_HERE[marker]}: {nodeid}")
