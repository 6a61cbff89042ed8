"""What an SRE sees of a running worker: `/metrics`, `/healthz` and `/readyz`."""

from __future__ import annotations

import asyncio
import time
import urllib.error
import urllib.request
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson
from prometheus_client.parser import text_string_to_metric_families

from tests.deploy_support import metric_names_used
from tests.scenarios import RULES
from tests.worker_support import (
    WorkerProcess,
    create_topics,
    decisions,
    population_traffic,
    produce,
    read_topic,
    replayed,
    send_raw,
    triggers,
    wait_for_records,
)
from triggerstream.events import INPUT_TOPICS
from triggerstream.records import ATTRIBUTIONS_TOPIC, DEAD_LETTER_TOPIC, DECISIONS_TOPIC
from triggerstream.settings import Settings
from triggerstream.topics import REPARTITION_TOPIC, input_partitions

Samples = dict[str, list[tuple[dict[str, str], float]]]
"""Sample name (as exposed, e.g. ``..._total``) -> its (labels, value) pairs."""

SECTION_11 = {
    "triggerstream_events_total": {"topic", "type"},
    "triggerstream_events_invalid_total": {"topic", "reason"},
    "triggerstream_events_duplicate_total": set(),
    "triggerstream_decisions_total": {"rule", "outcome", "reason"},
    "triggerstream_triggers_total": {"rule", "channel", "variant"},
    "triggerstream_trigger_latency_seconds_count": set(),
    "triggerstream_event_processing_seconds_count": set(),
    "triggerstream_attributions_total": {"rule", "variant", "group"},
    "triggerstream_attributed_revenue_total": {"rule", "currency"},
    "triggerstream_consumer_lag": {"topic", "partition"},
    "triggerstream_users_tracked": set(),
}
"""docs/contract.md section 11: each metric (histograms by their count) and its labels."""


def get(port: int, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def scrape(port: int) -> Samples:
    status, body = get(port, "/metrics")
    assert status == 200, body
    samples: Samples = defaultdict(list)
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            samples[sample.name].append((sample.labels, sample.value))
    return samples


def total(samples: Samples, name: str, **labels: str) -> float:
    return sum(
        value
        for found, value in samples.get(name, [])
        if all(found.get(k) == v for k, v in labels.items())
    )


def wait_until_served(worker: WorkerProcess, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            get(worker.web_port, "/healthz")
            return
        except OSError:
            assert worker.process is not None
            assert worker.process.poll() is None, worker.log()
            time.sleep(0.1)
    raise AssertionError(f"/healthz not served within {timeout}s:\n{worker.log()[-3000:]}")


def test_a_running_worker_serves_every_metric_of_the_design_moving_with_its_work(
    settings: Settings,
    cli_env: dict[str, str],
    tmp_path: Path,
    workers: list[WorkerProcess],
) -> None:
    events = population_traffic(tmp_path / "events.jsonl", 6000, 300)
    create_topics(cli_env)
    produce(cli_env, events)  # a backlog: the worker starts behind
    # A repeat and two kinds of bad input after the traffic: counted, never tracked.
    good = orjson.loads(events.read_bytes().splitlines()[0])
    topic, key = good.pop("topic"), good["user_id"].encode()
    bad = [{**good, "event_id": "bad-1", "occurred_at": "yesterday"}, {**good, "type": "hummed"}]
    asyncio.run(send_raw(settings, [(topic, key, orjson.dumps(e)) for e in [good, *bad]]))
    expected = replayed(events, tmp_path, cli_env)
    assert expected["attributions"], "the traffic should convert some offers"

    worker = WorkerProcess(cli_env, RULES, tmp_path).start()
    workers.append(worker)
    wait_until_served(worker)
    status, body = get(worker.web_port, "/healthz")
    assert status == 200, body

    # While it catches up: ready, and the lag of its input partitions shows the backlog.
    partitions = input_partitions()
    peak_lag = 0.0
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        status, body = get(worker.web_port, "/readyz")
        if status == 200:
            behind = scrape(worker.web_port)["triggerstream_consumer_lag"]
            peak_lag = max(peak_lag, sum(value for _, value in behind))
            if peak_lag > 0:
                break
        else:
            assert status == 503, body
            assert orjson.loads(body)["status"] == "not ready"
        time.sleep(0.05)
    assert orjson.loads(get(worker.web_port, "/readyz")[1])["partitions"] == list(range(partitions))
    assert peak_lag > 0, "the lag never showed the backlog the worker started with"

    got = wait_for_records(settings, DECISIONS_TOPIC, len(expected["decisions"]), timeout=180)
    assert len(got) == len(expected["decisions"])
    wait_for_records(settings, DEAD_LETTER_TOPIC, 2)
    samples = scrape(worker.web_port)

    for name, labels in SECTION_11.items():
        assert samples.get(name), f"{name} missing from /metrics"
        for found, _ in samples[name]:
            assert set(found) == labels, f"{name} has labels {sorted(found)}"
    # Each counts what a user finds on the topics.
    sent = triggers(settings)
    assert total(samples, "triggerstream_triggers_total") == len(sent)
    assert total(samples, "triggerstream_decisions_total") == len(decisions(settings))
    assert total(samples, "triggerstream_decisions_total", outcome="emitted") == len(sent)
    assert total(samples, "triggerstream_trigger_latency_seconds_count") == len(sent)
    attributions = read_topic(settings, ATTRIBUTIONS_TOPIC)
    assert len(attributions) == len(expected["attributions"])
    assert total(samples, "triggerstream_attributions_total") == len(attributions)
    revenue: dict[str, float] = defaultdict(float)
    for attribution in attributions:
        revenue[attribution["currency"]] += attribution["revenue"]
    for currency, amount in revenue.items():
        measured = total(samples, "triggerstream_attributed_revenue_total", currency=currency)
        assert abs(measured - amount) < 0.01, currency
    valid = len(expected_lines(events))
    assert total(samples, "triggerstream_events_total") == valid + 1  # the repeat is valid
    assert total(samples, "triggerstream_events_duplicate_total") == 1
    assert total(samples, "triggerstream_events_invalid_total", topic=topic) == 2
    assert total(samples, "triggerstream_event_processing_seconds_count") == valid
    users = {line["user_id"] for line in expected_lines(events)}
    assert total(samples, "triggerstream_users_tracked") == len(users)
    assert total(samples, "triggerstream_ready") == 1
    # Caught up: every input partition reported (the repartition topic's too: the worker
    # reads it as an input), nothing behind.
    lag = {
        (found["topic"], found["partition"]): value
        for found, value in samples["triggerstream_consumer_lag"]
    }
    inputs = (*INPUT_TOPICS, REPARTITION_TOPIC)
    assert set(lag) == {(name, str(p)) for name in inputs for p in range(partitions)}
    assert sum(lag.values()) == 0, lag
    # Everything the Grafana dashboard and the alert rules read is there.
    missing = sorted(name for name in metric_names_used() if not samples.get(name))
    assert not missing, f"the dashboard or alerts use metrics a worker does not serve: {missing}"
    # Labels stay bounded: no user or event id in any of them.
    ids = users | {line["event_id"] for line in expected_lines(events)}
    for name, series in samples.items():
        for found, _ in series:
            assert not ids & set(found.values()), f"{name} labels carry an id: {found}"


def expected_lines(events: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in events.read_bytes().splitlines()]
