"""What every fault test checks at its end: the worker decided what replay decides for
the same events, repeats are identical copies, and respect holds over what was sent."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from tests.reliability.respect import read_events, violations
from tests.worker_support import (
    assert_same_decisions,
    decision_keys,
    triggers,
    wait_for_records,
    write_lines,
)
from triggerstream.records import DECISIONS_TOPIC
from triggerstream.settings import Settings


def repeats(records: list[dict[str, Any]], key: str) -> Counter[str]:
    """How often each id was sent more than once."""
    return Counter({k: n - 1 for k, n in Counter(r[key] for r in records).items() if n > 1})


def assert_repeats_are_identical(records: list[dict[str, Any]], key: str) -> None:
    """A record sent again is the same record (bar its wall-clock time)."""
    seen: dict[str, dict[str, Any]] = {}
    for record in records:
        same = {k: v for k, v in record.items() if k != "emitted_at"}
        first = seen.setdefault(record[key], same)
        assert first == same, f"{key} {record[key]} sent twice, differently"


def assert_decided_as_replay(
    settings: Settings,
    expected: dict[str, list[dict[str, Any]]],
    events: Path,
    rules: Path,
    folder: Path,
) -> str:
    """Wait for the worker's decisions (up to 10 minutes), then check them, its
    triggers and respect; a summary of the repeats. The decisions are kept in
    ``folder`` for whoever reads a failure."""
    got = wait_for_records(
        settings,
        DECISIONS_TOPIC,
        len(expected["decisions"]),
        timeout=600,
        must=False,
        distinct="decision_id",  # repeats after a kill count once
    )
    write_lines(folder / "worker-decisions.jsonl", got)
    assert_same_decisions(got, expected["decisions"])
    assert set(decision_keys(got)) == set(decision_keys(expected["decisions"]))
    assert_repeats_are_identical(got, "decision_id")
    sent = triggers(settings)
    assert {t["trigger_id"] for t in sent} == {t["trigger_id"] for t in expected["triggers"]}
    assert_repeats_are_identical(sent, "trigger_id")
    assert violations(read_events(events), sent, rules) == []
    return (
        f"{len(got)} decisions ({sum(repeats(got, 'decision_id').values())} repeats), "
        f"{len(sent)} triggers ({sum(repeats(sent, 'trigger_id').values())} repeats)"
    )
