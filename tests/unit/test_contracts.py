"""topics/: the topic list, the JSON Schemas and the AsyncAPI document agree with the code."""

from __future__ import annotations

import json
from functools import cache
from typing import Any

import jsonschema
import orjson
import pytest
import yaml
from hypothesis import given, settings

from tests.strategies import events
from triggerstream.contracts import RECORD_NAMES, asyncapi_document, stale_files
from triggerstream.events import INPUT_TOPICS
from triggerstream.records import (
    ATTRIBUTIONS_TOPIC,
    CHANNEL_TOPICS,
    DEAD_LETTER_TOPIC,
    DECISIONS_TOPIC,
)
from triggerstream.rules_topic import RULES_TOPIC
from triggerstream.topics import REPARTITION_TOPIC, TIMER_TICKS_TOPIC, load_topics, topics_dir

TOPICS = topics_dir()
SCHEMA_OF_TOPIC = {spec.name: spec.records[0] for spec in load_topics() if spec.direction == "in"}


def validator(record: str) -> jsonschema.Draft202012Validator:
    schema = json.loads((TOPICS / "schemas" / f"{record}.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())


def test_generated_files_match_the_models() -> None:
    stale = stale_files(TOPICS)
    assert stale == [], f"regenerate with `python -m triggerstream.contracts`: {stale}"


def test_topics_yaml_declares_every_topic_of_the_design() -> None:
    names = [spec.name for spec in load_topics()]
    expected = [
        *INPUT_TOPICS,
        *CHANNEL_TOPICS.values(),
        DECISIONS_TOPIC,
        ATTRIBUTIONS_TOPIC,
        DEAD_LETTER_TOPIC,
        TIMER_TICKS_TOPIC,
        REPARTITION_TOPIC,
        RULES_TOPIC,
    ]
    assert sorted(names) == sorted(expected)
    inputs = [spec for spec in load_topics() if spec.direction == "in"]
    assert {spec.name for spec in inputs} == set(INPUT_TOPICS)
    co_partitioned = [spec for spec in load_topics() if spec.direction in ("in", "internal")]
    assert len({spec.partitions for spec in co_partitioned}) == 1, (
        "input topics, timer-ticks and repartition need equal partitions"
    )
    for spec in load_topics():
        assert spec.key == ("rules" if spec.name == RULES_TOPIC else "user_id")
        assert spec.retention.total_seconds() > 0
        for record in spec.records:
            assert record in RECORD_NAMES


@pytest.mark.parametrize("record", RECORD_NAMES)
def test_every_schema_is_valid_json_schema(record: str) -> None:
    validator(record)


@pytest.mark.parametrize("topic", INPUT_TOPICS)
def test_every_example_passes_its_json_schema(topic: str) -> None:
    check = validator(SCHEMA_OF_TOPIC[topic])
    for line in (TOPICS / "examples" / f"{topic}.jsonl").read_bytes().splitlines():
        document = orjson.loads(line)
        document.pop("topic")
        check.validate(document)


@cache
def validator_of(topic: str) -> jsonschema.Draft202012Validator:
    """One validator a topic for the property below: building one checks the schema
    against the metaschema (0.03 s), which the example itself need not repeat."""
    return validator(SCHEMA_OF_TOPIC[topic])


@settings(max_examples=200)
@given(events())
def test_what_the_models_accept_the_schemas_accept(drawn: tuple[str, dict[str, Any]]) -> None:
    topic, document = drawn
    validator_of(topic).validate(document)


@pytest.mark.parametrize(
    ("topic", "document"),
    [
        (
            "support-events",
            {
                "event_id": "e",
                "user_id": "u",
                "type": "nps_submitted",
                "occurred_at": "2026-01-01T00:00:00Z",
                "properties": {"score": 11},
            },
        ),
        (
            "usage-events",
            {
                "event_id": "e",
                "user_id": "u",
                "type": "teleport",
                "occurred_at": "2026-01-01T00:00:00Z",
            },
        ),
        (
            "usage-events",
            {
                "event_id": "e",
                "user_id": "u",
                "occurred_at": "2026-01-01T00:00:00Z",
                "properties": {"feature": "x"},
            },
        ),
        (
            "usage-events",
            {
                "event_id": "e",
                "user_id": "u",
                "type": "feature_used",
                "occurred_at": "2026-01-01T00:00:00",
                "properties": {"feature": "x"},
            },
        ),
    ],
)
def test_the_schemas_refuse_what_the_models_refuse(topic: str, document: dict[str, Any]) -> None:
    assert not validator(SCHEMA_OF_TOPIC[topic]).is_valid(document)


def test_asyncapi_names_every_topic_with_its_schema_and_direction() -> None:
    document = yaml.safe_load((TOPICS / "asyncapi.yaml").read_text())
    assert document == asyncapi_document()
    assert document["asyncapi"].startswith("3.")
    # The internal topics are no contract with anyone: they are left out.
    specs = {spec.name: spec for spec in load_topics() if spec.direction != "internal"}
    assert set(document["channels"]) == set(specs)
    for name, channel in document["channels"].items():
        spec = specs[name]
        assert channel["address"] == name
        assert channel["bindings"]["kafka"]["partitions"] == spec.partitions
        for ref in channel["messages"].values():
            message = document["components"]["messages"][ref["$ref"].rsplit("/", 1)[1]]
            payload = TOPICS / message["payload"]["$ref"]
            assert payload.exists(), payload
    actions: dict[str, set[str]] = {}
    for op in document["operations"].values():
        actions.setdefault(op["channel"]["$ref"].rsplit("/", 1)[1], set()).add(op["action"])
    # The published rules: `rules publish` sends them, the workers receive them.
    expected = {"in": {"receive"}, "out": {"send"}, "control": {"send", "receive"}}
    assert actions == {name: expected[spec.direction] for name, spec in specs.items()}
