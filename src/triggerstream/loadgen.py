"""Traffic at a set rate against any broker (``triggerstream loadgen``, and the demo's
generator): the :class:`~triggerstream.simulation.Population` living in real time, its
events produced as they fall due, and optionally its answers to the offers it gets."""

from __future__ import annotations

import asyncio
import signal
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from triggerstream.kafka import reading, unreachable
from triggerstream.records import CHANNEL_TOPICS
from triggerstream.settings import Settings
from triggerstream.simulation import Population

TICK = 0.05
"""Seconds between two rounds of producing what fell due."""
LOOKAHEAD = 1.0
"""Moments are started for the events due this many seconds ahead of now."""


class Load:
    """Produces a population's events at ``rate`` events per second, answers to offers
    included (they take the place of new moments)."""

    def __init__(self, settings: Settings, population: Population, rate: float) -> None:
        if rate <= 0:
            raise ValueError("the rate must be above 0 events per second")
        self.settings = settings
        self.population = population
        self.rate = rate
        self.sent = 0
        self.window: deque[tuple[float, int]] = deque(maxlen=100)
        """(monotonic time, events sent) samples, for the rate over the last seconds."""

    def events_per_second(self, over: float = 5.0) -> float:
        now = time.monotonic()
        recent = [(at, sent) for at, sent in self.window if now - at <= over]
        if len(recent) < 2 or recent[-1][0] == recent[0][0]:
            return 0.0
        return (recent[-1][1] - recent[0][1]) / (recent[-1][0] - recent[0][0])

    async def run(self, stop: asyncio.Event, duration: float | None = None) -> None:
        """Produce until ``stop`` is set or ``duration`` seconds have passed; every
        message sent is acknowledged before this returns."""
        producer = AIOKafkaProducer(**self.settings.kafka_options(), linger_ms=5, acks="all")
        try:
            await asyncio.wait_for(producer.start(), self.settings.request_timeout)
        except (KafkaError, OSError, TimeoutError) as error:
            await producer.stop()
            raise await unreachable(self.settings, error) from None
        began = time.monotonic()
        pending: list[asyncio.Future[Any]] = []
        try:
            while not stop.is_set():
                elapsed = time.monotonic() - began
                if duration is not None and elapsed >= duration:
                    break
                now = time.time()
                self.population.keep_pace(now, self.sent, self.rate * (elapsed + LOOKAHEAD))
                for topic, envelope in self.population.due(now):
                    pending.append(
                        await producer.send(
                            self.settings.topic(topic),
                            key=envelope["user_id"].encode(),
                            value=orjson.dumps(envelope),
                        )
                    )
                    self.sent += 1
                if len(pending) >= 500:
                    await asyncio.gather(*pending)
                    pending.clear()
                self.window.append((time.monotonic(), self.sent))
                await asyncio.sleep(TICK)
            await asyncio.gather(*pending)
        finally:
            await producer.stop()


async def follow(
    settings: Settings,
    topics: Iterable[str],
    on_record: Callable[[str, dict[str, Any]], None],
    stop: asyncio.Event,
) -> None:
    """Hand every new record of ``topics`` (names without the prefix) to ``on_record(topic, value)``
    as it arrives, from now on, until ``stop`` is set. Reads without a consumer group."""
    names = {settings.topic(topic): topic for topic in topics}
    async with reading(settings, names, fetch_max_wait_ms=100) as (consumer, assigned):
        await consumer.seek_to_end(*assigned)
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=200, max_records=1000)
            for records in batches.values():
                for record in records:
                    if record.value is not None:
                        on_record(names[record.topic], orjson.loads(record.value))


def reacting(population: Population) -> Callable[[str, dict[str, Any]], None]:
    """A :func:`follow` callback: users answer the offers they get."""

    def on_record(topic: str, value: dict[str, Any]) -> None:
        if topic in CHANNEL_TOPICS.values():
            population.react(value, time.time())

    return on_record


async def run(
    load: Load,
    duration: float | None,
    react: bool,
    report: Callable[[str], None],
) -> None:
    """``load`` until Ctrl-C, SIGTERM or ``duration`` seconds; with ``react``, its users
    answer the offers they get. Every 10 seconds ``report`` gets a line on the rate."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    tasks = [asyncio.create_task(load.run(stop, duration))]
    if react:
        answers = reacting(load.population)
        tasks.append(
            asyncio.create_task(follow(load.settings, CHANNEL_TOPICS.values(), answers, stop))
        )
    began = time.monotonic()
    while not tasks[0].done():
        await asyncio.wait([tasks[0]], timeout=10)
        report(
            f"loadgen: {load.sent:,} events in {time.monotonic() - began:,.0f} s "
            f"({load.events_per_second(10):,.0f}/s)"
        )
    stop.set()
    await asyncio.gather(*tasks)
