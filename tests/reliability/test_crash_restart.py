"""Crashes: a worker SIGKILLed at random points of a long stream, again and again.

At the end every user's decisions are replay's for the same events: nothing lost (an
event processed by the dead worker but not committed is processed again), nothing
counted twice (its state changes were not stored, or stored with their offsets), and
no trigger sent that replay does not send. What the dead worker had sent but not yet
recorded as done is sent again, with the same ids (at-least-once; docs/contract.md: the
notification services drop a trigger_id they have seen).
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from tests.reliability.parity import assert_decided_as_replay
from tests.reliability.respect import read_events
from tests.reliability.streams import respectful_traffic
from tests.scenarios import RULES
from tests.worker_support import (
    WorkerProcess,
    assert_the_policy_beyond_the_anchors_is_at_work,
    create_topics,
    produce,
    replayed,
)
from triggerstream.settings import Settings

EVENTS = 200_000
USERS = 10_000
KILLS = 4
SEED = 20261122


# Tansu answers ListOffsets(LATEST) with the first offset of the last batch + 1, so faust
# finds a restarted worker's RocksDB ahead of the changelog (STYLE.md): Apache Kafka.
@pytest.mark.apache_only
def test_a_worker_killed_at_random_points_decides_what_replay_decides(
    settings: Settings, cli_env: dict[str, str], tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    rng = random.Random(SEED)
    events = respectful_traffic(tmp_path / "events.jsonl", EVENTS, USERS)
    create_topics(cli_env)
    produce(cli_env, events)
    expected = replayed(events, tmp_path, cli_env)
    assert len(expected["triggers"]) > 150
    assert_the_policy_beyond_the_anchors_is_at_work(expected["decisions"])

    worker = WorkerProcess(cli_env, RULES, tmp_path).start()
    workers.append(worker)
    killed_after = []
    for _ in range(KILLS):
        worker.wait_ready(len(worker.ready_lines()) + 1)
        # A random point: somewhere in the first 40,000 events of this life.
        killed_after.append(worker.wait_processed(rng.randint(1, 40_000), timeout=300))
        worker.kill()
        worker.start()
    print(f"killed after {killed_after} events of each life (seed {SEED})")
    assert sum(killed_after) < len(read_events(events)), "the stream ended before the kills"

    summary = assert_decided_as_replay(settings, expected, events, RULES, tmp_path)
    print(f"{summary} after {KILLS} kills")
    assert worker.stop() == 0, worker.log()[-3000:]
