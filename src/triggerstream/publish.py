"""Publishing events from Python product services.

    from triggerstream.events import FeatureUsed, FeatureUsedProperties
    from triggerstream.publish import EventPublisher

    async with EventPublisher(Settings()) as publisher:
        await publisher.publish(FeatureUsed(
            event_id="evt-1", user_id="u-42", occurred_at=now,
            properties=FeatureUsedProperties(feature="skip"),
        ))

Events are validated by their models, serialized to the JSON of docs/contract.md section 4 and
keyed by ``user_id`` so that one user's events stay in order on one partition. Services in
other languages publish the same JSON, checked against ``topics/schemas/``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from triggerstream.events import Envelope, encode_event, validate_event
from triggerstream.kafka import unreachable
from triggerstream.settings import Settings


class EventPublisher:
    """An async producer of validated input events, keyed by user."""

    def __init__(self, settings: Settings | None = None, **producer_options: Any) -> None:
        self.settings = settings or Settings()
        options = {"linger_ms": 5, "acks": "all", **producer_options}
        self._producer = AIOKafkaProducer(**self.settings.kafka_options(), **options)

    async def __aenter__(self) -> EventPublisher:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        try:
            await asyncio.wait_for(self._producer.start(), self.settings.request_timeout)
        except (KafkaError, OSError, TimeoutError) as error:
            await self._producer.stop()
            raise await unreachable(self.settings, error) from None

    async def stop(self) -> None:
        """Flush what is buffered and close."""
        await self._producer.stop()

    async def publish(
        self, event: Envelope | Mapping[str, Any], topic: str | None = None, wait: bool = True
    ) -> None:
        """Send one event to its input topic.

        ``event`` is a model instance, or a mapping validated here against ``topic``'s
        types (``InvalidEvent`` if it does not fit; nothing is sent then). With
        ``wait=False`` the event is only buffered; :meth:`flush` or leaving the context
        waits for the broker.
        """
        if not isinstance(event, Envelope):
            if topic is None:
                raise ValueError("a mapping needs its topic, e.g. topic='usage-events'")
            event = validate_event(topic, dict(event))
        value = encode_event(event)
        destination = self.settings.topic(event.topic)
        future = await self._producer.send(destination, value=value, key=event.user_id.encode())
        if wait:
            await future

    async def flush(self) -> None:
        await self._producer.flush()
