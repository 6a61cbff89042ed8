"""The streams the reliability suite runs: the demo's month of traffic with the users
changing their minds about being contacted, and a producer that sends it live."""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import yaml
from aiokafka import AIOKafkaProducer

from tests.reliability.respect import read_events
from tests.worker_support import month_start
from triggerstream.settings import Settings
from triggerstream.traffic import history


def respectful_traffic(path: Path, events: int, users: int, seed: int = 11) -> Path:
    """A month of realistic traffic that ended two weeks ago (``traffic.history``), and
    for a third of the users some changes of heart in it: a channel's consent withdrawn
    or granted, an unsubscribe from email or push, offers opted out of (and sometimes
    back in), every offer snoozed for a few days. Written in event time order."""
    start = month_start()
    lines = [orjson.loads(line) for line in history(events, users, seed, start)]
    rng = random.Random(seed)
    span = 30 * 86400
    extra: list[dict[str, Any]] = []

    def emit(user: str, at: float, topic: str, type_: str, props: dict[str, Any]) -> None:
        extra.append(
            {
                "topic": topic,
                "event_id": f"r{len(extra)}",
                "user_id": user,
                "type": type_,
                "occurred_at": (start + dt.timedelta(seconds=at)).isoformat(),
                "properties": props,
            }
        )

    for u in rng.sample(range(users), users // 3):
        user = f"u{u}"
        for _ in range(rng.randint(1, 3)):
            at = rng.uniform(3600, span)
            change = rng.choice(["consent", "unsubscribe", "opt_out", "snooze"])
            if change == "consent":
                emit(
                    user,
                    at,
                    "profile-events",
                    "consent_updated",
                    {
                        "channel": rng.choice(["in_app", "push", "email"]),
                        "granted": rng.random() < 0.4,
                    },
                )
            elif change == "unsubscribe":
                channel = rng.choice(["push", "email"])
                emit(user, at, "offer-feedback", "unsubscribed", {"channel": channel})
            elif change == "opt_out":
                emit(user, at, "profile-events", "preferences_updated", {"offers_opt_out": True})
                if rng.random() < 0.5:
                    back = at + rng.uniform(3600, 10 * 86400)
                    emit(
                        user,
                        back,
                        "profile-events",
                        "preferences_updated",
                        {"offers_opt_out": False},
                    )
            else:
                until = start + dt.timedelta(seconds=at + rng.uniform(86400, 5 * 86400))
                emit(
                    user,
                    at,
                    "profile-events",
                    "preferences_updated",
                    {"snooze_all_until": until.isoformat()},
                )
    everything = lines + extra
    everything.sort(key=lambda line: dt.datetime.fromisoformat(line["occurred_at"]))
    path.write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in everything))
    return path


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
