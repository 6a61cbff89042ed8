"""The worker's Prometheus metrics (docs/contract.md section 11). The core returns facts; the
worker counts them here. Labels stay bounded: rule ids, topics, types, reasons and
channels, never a user or an event id."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.metrics_core import GaugeMetricFamily
from prometheus_client.registry import Collector

EVENTS = Counter(
    "triggerstream_events", "Valid input events, by topic and type.", ["topic", "type"]
)
EVENTS_INVALID = Counter(
    "triggerstream_events_invalid",
    "Input sent to events.dlq, by topic and reason code.",
    ["topic", "reason"],
)
EVENTS_MISROUTED = Counter(
    "triggerstream_events_misrouted",
    "Input messages read off their user's home partition (murmur2 of the user_id) and "
    "forwarded there, by topic and cause: partitioner, null_key or key_mismatch.",
    ["topic", "cause"],
)
OUTPUTS_FAILED = Counter(
    "triggerstream_outputs_failed",
    "Records the broker refused for good (not retried; dead-lettered as output_refused), "
    "by topic and reason: too_large, not_authorized or other.",
    ["topic", "reason"],
)
EVENTS_DUPLICATE = Counter(
    "triggerstream_events_duplicate", "Events dropped as repeats of an event id already seen."
)
DECISIONS = Counter(
    "triggerstream_decisions",
    "Decisions, by rule, outcome and suppression reason.",
    ["rule", "outcome", "reason"],
)
TRIGGERS = Counter(
    "triggerstream_triggers",
    "Triggers sent, by rule, channel and variant.",
    ["rule", "channel", "variant"],
)
TRIGGER_LATENCY = Histogram(
    "triggerstream_trigger_latency_seconds",
    "From a trigger's event time (or a timer's due time) to its emission.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
EVENT_PROCESSING = Histogram(
    "triggerstream_event_processing_seconds",
    "Time to process one input event, outputs acknowledged: a batch's time shared by its events.",
    buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1),
)
ATTRIBUTIONS = Counter(
    "triggerstream_attributions",
    "Purchases attributed to a trigger or holdout decision.",
    ["rule", "variant", "group"],
)
ATTRIBUTED_REVENUE = Counter(
    "triggerstream_attributed_revenue", "Revenue of attributed purchases.", ["rule", "currency"]
)
USERS_TRACKED = Gauge("triggerstream_users_tracked", "Users with state on this worker.")
RULES_RELOADS = Counter(
    "triggerstream_rules_reloads", "Changes of the rules file, applied or refused.", ["result"]
)
for _result in ("applied", "refused"):  # exposed at 0 from the start, so rates and
    RULES_RELOADS.labels(_result)  # alerts see the series before the first change
RULES_VERSION = Gauge(
    "triggerstream_rules_version_info",
    "The version of the rules this worker runs (sha256 of their text, 12 hex digits), "
    "as an info metric: 1 on the running version's series.",
    ["version"],
)
READY = Gauge(
    "triggerstream_ready",
    "1 once the worker's partitions are assigned and its tables recovered, else 0.",
)


class ConsumerLag(Collector):
    """``triggerstream_consumer_lag{topic,partition}``: per input topic partition this
    worker owns, the messages on the broker not yet processed, computed when scraped
    (the worker gives the figures; before it has any, nothing is reported)."""

    def __init__(self) -> None:
        self.source: Callable[[], Mapping[tuple[str, int], int]] = dict

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "triggerstream_consumer_lag",
            "Messages of an input topic partition not yet processed by this worker.",
            labels=["topic", "partition"],
        )
        for (topic, partition), lag in sorted(self.source().items()):
            family.add_metric([topic, str(partition)], lag)
        yield family


CONSUMER_LAG = ConsumerLag()
REGISTRY.register(CONSUMER_LAG)


def running_rules(version: str) -> None:
    """Show ``version`` as the one running: the series of the one before goes."""
    RULES_VERSION.clear()
    RULES_VERSION.labels(version).set(1)
