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

import asyncio
import threading
import time
from pathlib import Path

import orjson
import pytest
import yaml
from aiokafka import AIOKafkaProducer

from tests.reliability.parity import assert_decided_as_replay
from tests.reliability.respect import read_events
from tests.reliability.streams import respectful_traffic
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


def without_timers(rules: Path, path: Path) -> Path:
    """The rules file without the rules that set timers, and without deferral (a
    deferred match's next look is a timer too)."""
    document = yaml.safe_load(rules.read_text())
    document["rules"] = [
        {key: value for key, value in rule.items() if key != "defer"}
        for rule in document["rules"]
        if "delay" not in rule
        and not {"deadline", "inactivity", "not_followed"} & set(rule["trigger"])
    ]
    path.write_text(yaml.safe_dump(document))
    return path


class SteadyProducer(threading.Thread):
    """Produces the stream's lines in order at ``rate`` events per second."""

    def __init__(self, settings: Settings, events: Path, rate: int) -> None:
        super().__init__(daemon=True)
        self.settings = settings
        self.lines = read_events(events)
        self.rate = rate
        self.sent = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            asyncio.run(self._produce())
        except BaseException as error:  # reported by the test
            self.error = error

    async def _produce(self) -> None:
        producer = AIOKafkaProducer(**self.settings.kafka_options(), linger_ms=5, acks="all")
        await producer.start()
        try:
            began = time.monotonic()
            pending: list[asyncio.Future[object]] = []
            topic_of: dict[str, str] = {}
            for line in self.lines:
                fields = dict(line)
                topic = self.settings.topic(fields.pop("topic"))
                user = fields["user_id"]
                if topic_of.get(user, topic) != topic or len(pending) >= self.rate // 10:
                    await self._flush(pending, began)
                    topic_of.clear()
                topic_of[user] = topic
                pending.append(await producer.send(topic, orjson.dumps(fields), key=user.encode()))
            await self._flush(pending, began)
        finally:
            await producer.stop()

    async def _flush(self, pending: list[asyncio.Future[object]], began: float) -> None:
        """Wait until what was sent is on the broker, then keep to the rate. A user's
        next event on another topic is sent only after this: Kafka keeps the order
        within a topic partition, not across topics, and a worker processes a user's
        events in the order they arrive (docs/contract.md)."""
        await asyncio.gather(*pending)
        self.sent += len(pending)
        pending.clear()
        await asyncio.sleep(max(0.0, began + self.sent / self.rate - time.monotonic()))


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
