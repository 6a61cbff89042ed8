"""Rebalances under load: workers join and leave while traffic flows.

A steady stream is produced while a second and a third worker join the first and
then leave again (one stopped, one killed). Every rebalance moves partitions with
messages in flight: read and not processed, processed and not committed, state in
RocksDB of one worker and in the changelog for the next. At the end the decisions
are replay's for the same events, each once or repeated identically.

The demo's rules without its timers (deadline, inactivity, delay, not_followed, and
deferral, whose next looks are timers): the stream is last
month's traffic produced now, slowly, and a worker fires a timer on the wall clock once
it is due and every input is read to its end, where replay has the whole month in
hand. Timers across restarts and rebalances are tested on backlogs.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.reliability.parity import assert_decided_as_replay
from tests.reliability.streams import SteadyProducer, respectful_traffic, without_timers
from tests.scenarios import RULES
from tests.worker_support import (
    WorkerProcess,
    create_topics,
    replayed,
)
from triggerstream.settings import Settings

EVENTS = 100_000
USERS = 10_000
RATE = 2_000
"""Events per second produced while the workers come and go."""


@pytest.mark.apache_only
def test_workers_joining_and_leaving_under_load_decide_what_replay_decides(
    settings: Settings, cli_env: dict[str, str], tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    events = respectful_traffic(tmp_path / "events.jsonl", EVENTS, USERS)
    rules = without_timers(RULES, tmp_path / "rules.yaml")
    create_topics(cli_env)
    expected = replayed(events, tmp_path, cli_env, rules)
    first = WorkerProcess(cli_env, rules, tmp_path, "w1").start()
    workers.append(first)
    first.wait_ready()
    flow = SteadyProducer(settings, events, RATE)
    flow.start()
    moments: list[str] = []

    def note(what: str) -> None:
        moments.append(f"{flow.sent} sent: {what}")

    second = WorkerProcess(cli_env, rules, tmp_path, "w2").start()
    workers.append(second)
    second.wait_ready()
    note("a second worker joined")
    third = WorkerProcess(cli_env, rules, tmp_path, "w3").start()
    workers.append(third)
    third.wait_ready()
    note("a third worker joined")
    time.sleep(3)
    rebalanced = len(third.ready_lines()) + 1
    assert second.stop() == 0, second.log()[-3000:]
    note("the second stopped")
    third.wait_ready(rebalanced)
    time.sleep(3)
    rebalanced = len(first.ready_lines()) + 1
    third.kill()
    note("the third was killed")
    killed_at = flow.sent
    first.wait_ready(rebalanced)
    note("the first has every partition again")
    flow.join(timeout=300)
    assert flow.error is None, flow.error
    print(*moments, sep="\n")
    assert killed_at < len(flow.lines), "the traffic ended before the workers had come and gone"
    print(assert_decided_as_replay(settings, expected, events, rules, tmp_path))
    assert first.stop() == 0, first.log()[-3000:]
