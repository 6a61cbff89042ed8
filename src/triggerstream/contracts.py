"""The published contracts in ``topics/``, generated from the models.

``topics/schemas/*.schema.json`` (one JSON Schema per record type) and
``topics/asyncapi.yaml`` (an AsyncAPI 3 document of every topic and message) are made
here from the pydantic models and ``topics/topics.yaml``, so they cannot say something the
code does not do. Regenerate them after changing a model:

    python -m triggerstream.contracts          # rewrite topics/schemas and asyncapi.yaml
    python -m triggerstream.contracts --check  # exit 1 if they are out of date (CI does)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, TypeAdapter

from triggerstream import __version__
from triggerstream.events import EVENT_TYPES, EVENT_UNIONS, MAX_EVENT_BYTES
from triggerstream.records import Attribution, DeadLetter, Decision, Trigger
from triggerstream.rules_topic import PublishedRules
from triggerstream.topics import load_topics, topics_dir

_INPUT_RECORDS: dict[str, str] = {
    "usage-event": "usage-events",
    "purchase-event": "purchase-events",
    "support-event": "support-events",
    "profile-event": "profile-events",
    "feedback-event": "offer-feedback",
}
_OUTPUT_RECORDS: dict[str, type[BaseModel]] = {
    "trigger": Trigger,
    "decision": Decision,
    "attribution": Attribution,
    "dead-letter": DeadLetter,
    "published-rules": PublishedRules,
}
RECORD_NAMES: tuple[str, ...] = (*_INPUT_RECORDS, *_OUTPUT_RECORDS)
"""Every record type with a schema, by the name topics.yaml uses."""

_SCHEMA_BASE = "https://github.com/triggerstream/triggerstream/topics/schemas/"
_TIME_NOTE = (
    " Timestamps are RFC 3339 with an offset, between 2000-01-01 and 2100-01-01."
    f" An encoded event is at most {MAX_EVENT_BYTES} bytes. Unknown fields are ignored."
)


KEY_OF_INPUT = (
    "Producers key every input message by its user_id and place it with Kafka's default "
    "partitioner (murmur2 of the key, as the Java client and aiokafka do; librdkafka "
    "clients such as confluent-kafka need partitioner=murmur2_random). A message on "
    "another partition is forwarded by the worker to its user's partition (counted in "
    "triggerstream_events_misrouted_total): nothing is lost, but it costs a second "
    "write and read. Values are JSON of at most 64 KiB, in any codec (none, gzip, "
    "snappy, lz4, zstd); headers are carried to the records an event causes."
)


def record_schema(name: str) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of one record type."""
    if name in _INPUT_RECORDS:
        topic = _INPUT_RECORDS[name]
        schema = TypeAdapter(EVENT_UNIONS[topic]).json_schema(mode="validation")
        definitions = schema["$defs"]
        for definition in definitions.values():
            fields = definition.get("properties", {})
            if "const" not in fields.get("type", {}):
                continue
            # `type` has a default only so Python code need not repeat it; on the wire
            # it is what picks the model, so it is required. `properties` defaults to
            # {}, which only fits a type whose properties are all optional.
            required = ["type", *definition.get("required", [])]
            target = fields["properties"].get("$ref", "").rsplit("/", 1)[-1]
            if definitions.get(target, {}).get("required"):
                required.append("properties")
            definition["required"] = required
        types = ", ".join(q.split(".", 1)[1] for q, c in EVENT_TYPES.items() if c.topic == topic)
        title = f"{name} (on {topic})"
        description = f"An event on {topic}, keyed by user_id. Types: {types}." + _TIME_NOTE
    else:
        model = _OUTPUT_RECORDS[name]
        schema = model.model_json_schema(mode="serialization")
        title = name
        description = (model.__doc__ or "").strip().splitlines()[0]
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"{_SCHEMA_BASE}{name}.schema.json",
        **schema,
        "title": title,
        "description": description,
    }


def asyncapi_document() -> dict[str, Any]:
    """An AsyncAPI 3.0 document of every topic, its messages and triggerstream's role."""
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for record in RECORD_NAMES:
        messages[record] = {
            "name": record,
            "title": record_schema(record)["title"],
            "contentType": "application/json",
            "payload": {"$ref": f"./schemas/{record}.schema.json"},
            "bindings": {
                "kafka": {
                    "key": {
                        "type": "string",
                        "description": KEY_OF_INPUT
                        if record in _INPUT_RECORDS
                        else "rules"
                        if record == "published-rules"
                        else "user_id",
                    },
                    "bindingVersion": "0.5.0",
                }
            },
        }
    for spec in load_topics():
        if spec.direction == "internal":
            continue  # the worker's own topic, no contract with anyone
        channels[spec.name] = {
            "address": spec.name,
            "description": spec.description
            + " (TRIGGERSTREAM_TOPIC_PREFIX, if set, is prepended to the address.)",
            "messages": {r: {"$ref": f"#/components/messages/{r}"} for r in spec.records},
            "bindings": {
                "kafka": {
                    "partitions": spec.partitions,
                    "topicConfiguration": {
                        "cleanup.policy": [spec.cleanup_policy],
                        "retention.ms": int(spec.retention.total_seconds() * 1000),
                    },
                    "bindingVersion": "0.5.0",
                }
            },
        }
        # The published rules are sent by `rules publish` and received by the workers.
        verbs = {"in": ["consume"], "out": ["produce"], "control": ["produce", "consume"]}
        for verb in verbs[spec.direction]:
            operations[f"{verb}-{spec.name}"] = {
                "action": "receive" if verb == "consume" else "send",
                "channel": {"$ref": f"#/channels/{spec.name}"},
                "messages": [
                    {"$ref": f"#/channels/{spec.name}/messages/{r}"} for r in spec.records
                ],
            }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "triggerstream",
            "version": __version__.split("+")[0],
            "description": (
                "Behavioral offer triggers. Product services publish usage, purchase, "
                "support and profile events and notification services publish offer "
                "feedback; triggerstream publishes offer triggers per channel, decisions, "
                "attributions and dead letters. Every message is keyed by user_id. "
                + KEY_OF_INPUT
                + " "
                "Generated from the models by `python -m triggerstream.contracts`."
            ),
            "license": {"name": "Apache-2.0"},
        },
        "defaultContentType": "application/json",
        "servers": {
            "local": {
                "host": "localhost:9092",
                "protocol": "kafka",
                "description": "`triggerstream broker` or any Kafka cluster",
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages},
    }


def rendered(directory: Path) -> dict[Path, str]:
    """Every generated file under ``directory`` with its exact text."""
    files = {
        directory / "schemas" / f"{name}.schema.json": json.dumps(
            record_schema(name), indent=2, sort_keys=False
        )
        + "\n"
        for name in RECORD_NAMES
    }
    header = "# Generated by `python -m triggerstream.contracts` from the models; do not edit.\n"
    files[directory / "asyncapi.yaml"] = header + yaml.safe_dump(
        asyncapi_document(), sort_keys=False, width=100, allow_unicode=True
    )
    return files


def stale_files(directory: Path) -> list[Path]:
    """Generated files that are missing or differ from what the models give."""
    return [
        path
        for path, text in rendered(directory).items()
        if not path.exists() or path.read_text(encoding="utf-8") != text
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m triggerstream.contracts")
    parser.add_argument("--check", action="store_true", help="exit 1 if files are out of date")
    parser.add_argument("--dir", type=Path, default=topics_dir(), help="the topics/ folder")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_files(args.dir)
        for path in stale:
            print(f"out of date: {path}", file=sys.stderr)
        if stale:
            print("regenerate with: python -m triggerstream.contracts", file=sys.stderr)
        return 1 if stale else 0
    for path, text in rendered(args.dir).items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
