"""`not_followed` in the worker on a real broker (docs/contract.md section 15): the wait
fires on the wall clock, and worker and replay agree on what happened."""

from __future__ import annotations

import datetime as dt
import signal
import time
from pathlib import Path
from typing import Any

from tests.engine_support import event, rule, rules_file
from tests.worker_support import (
    WorkerProcess,
    create_topics,
    decision_keys,
    decisions,
    produce,
    replayed,
    triggers,
    wait_for_records,
    write_lines,
)
from triggerstream.records import DECISIONS_TOPIC
from triggerstream.settings import Settings

CART = rule(
    "cart-abandoned",
    {
        "not_followed": {
            "first": {"type": "purchase.checkout_started"},
            "then": {"type": "purchase.order_completed"},
            "within": "2s",
        }
    },
    channels=["in_app"],
)
_SPEC = CART["trigger"]["not_followed"]


def shopper(user: str, when: dt.datetime, ordered: bool) -> list[dict[str, Any]]:
    """A session and a checkout; an order a moment later when ``ordered``."""
    cart = [{"sku": "camera-x", "price": 300}]
    lines = [
        event("usage.session_started", user, when),
        event("purchase.checkout_started", user, when, f"cart-{user}", cart=cart),
    ]
    if ordered:
        later = when + dt.timedelta(seconds=1)
        lines.append(
            event(
                "purchase.order_completed",
                user,
                later,
                order_id=f"o-{user}",
                items=cart,
                total=300,
                currency="EUR",
            )
        )
    return lines


def test_the_worker_fires_a_not_followed_wait_on_the_wall_clock_as_replay_does(
    settings: Settings, cli_env: dict[str, str], tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(rules_file([CART]))
    create_topics(cli_env)
    worker = WorkerProcess(cli_env, rules, tmp_path).start()
    workers.append(worker)
    worker.wait_ready()
    now = dt.datetime.now(dt.UTC)
    events = write_lines(
        tmp_path / "events.jsonl",
        [
            *shopper("ava", now, ordered=False),
            *shopper("bob", now - dt.timedelta(seconds=1), ordered=True),
        ],
    )
    produce(cli_env, events)

    (decision,) = wait_for_records(settings, DECISIONS_TOPIC, 1, timeout=30)
    assert (decision["user_id"], decision["outcome"]) == ("ava", "emitted")
    (trigger,) = triggers(settings)
    due = now + dt.timedelta(seconds=2)
    assert dt.datetime.fromisoformat(trigger["triggered_at"]) == due
    assert trigger["caused_by"]["event_id"] == "cart-ava"
    assert dt.datetime.fromisoformat(trigger["emitted_at"]) >= due  # on the wall clock
    time.sleep(3)  # more wake-ups come and go: still one, and nothing for bob
    assert len(decisions(settings)) == 1

    expected = replayed(events, tmp_path, cli_env, rules)
    assert decision_keys(decisions(settings)) == decision_keys(expected["decisions"])
    assert [_without_emitted_at(t) for t in triggers(settings)] == [
        _without_emitted_at(t) for t in expected["triggers"]
    ]
    assert worker.stop(signal.SIGTERM) == 0
    assert "Traceback" not in worker.log()


def _without_emitted_at(trigger: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in trigger.items() if k != "emitted_at"}


def test_a_wait_due_while_the_worker_is_down_fires_once_when_it_returns(
    settings: Settings, cli_env: dict[str, str], tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(rules_file([dict(CART, trigger={"not_followed": {**_SPEC, "within": "6s"}})]))
    create_topics(cli_env)
    worker = WorkerProcess(cli_env, rules, tmp_path).start()
    workers.append(worker)
    worker.wait_ready()
    now = dt.datetime.now(dt.UTC)
    produce(cli_env, write_lines(tmp_path / "events.jsonl", shopper("ava", now, ordered=False)))
    time.sleep(2)  # the checkout is processed and the wait stored; it is not due yet
    assert worker.stop(signal.SIGTERM) == 0
    assert decisions(settings) == []
    time.sleep(max(0.0, (now + dt.timedelta(seconds=7) - dt.datetime.now(dt.UTC)).total_seconds()))

    worker.start()
    worker.wait_ready(count=2)
    (decision,) = wait_for_records(settings, DECISIONS_TOPIC, 1, timeout=30)
    assert decision["outcome"] == "emitted"
    (trigger,) = triggers(settings)
    assert dt.datetime.fromisoformat(trigger["triggered_at"]) == now + dt.timedelta(seconds=6)
    time.sleep(3)
    assert len(decisions(settings)) == 1
    assert worker.stop(signal.SIGTERM) == 0
