"""The input event models: what they accept, what they refuse, and why
(docs/contract.md section 4)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.strategies import events
from triggerstream.events import (
    BOM,
    EVENT_TYPES,
    INPUT_TOPICS,
    MAX_EVENT_BYTES,
    FeatureUsed,
    FeatureUsedProperties,
    InvalidEvent,
    OrderCompleted,
    SessionEnded,
    decode_event,
    decode_line,
    encode_event,
    validate_event,
)
from triggerstream.topics import topics_dir

DEEP: Any = []
for _ in range(200):
    DEEP = [DEEP]

EXAMPLES = sorted((topics_dir() / "examples").glob("*.jsonl"))


def envelope(type_: str, properties: Any = None, **fields: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "event_id": "e-1",
        "user_id": "u-1",
        "type": type_,
        "occurred_at": "2026-11-02T09:00:00+01:00",
    }
    if properties is not None:
        document["properties"] = properties
    document.update(fields)
    return document


def raw(document: Any) -> bytes:
    return orjson.dumps(document)


def test_a_valid_event_is_typed_and_keeps_its_offset() -> None:
    event = decode_event("usage-events", raw(envelope("feature_used", {"feature": "skip"})))
    assert isinstance(event, FeatureUsed)
    assert event.properties.feature == "skip"
    assert event.properties.quantity == 1
    assert event.occurred_at.utcoffset() == dt.timedelta(hours=1)
    assert event.qualified_type == "usage.feature_used"


def test_unknown_fields_are_ignored_at_every_level() -> None:
    document = envelope("feature_used", {"feature": "skip", "screen": "player"}, source="ios")
    event = decode_event("usage-events", raw(document))
    assert event.properties == FeatureUsedProperties(feature="skip")


def test_properties_default_to_empty_object() -> None:
    event = decode_event("usage-events", raw(envelope("session_ended")))
    assert isinstance(event, SessionEnded)


@pytest.mark.parametrize(
    ("topic", "payload", "code", "reason_part"),
    [
        ("usage-events", b'{"event_id": "e-1", ', "not_json", "invalid JSON"),
        ("usage-events", b"\xff\xfe\x00", "not_json", "invalid JSON"),
        ("usage-events", b"", "not_json", "invalid JSON"),
        ("usage-events", b"[1, 2]", "not_object", "JSON object"),
        ("usage-events", b'"skip"', "not_object", "JSON object"),
        ("usage-events", b"null", "not_object", "JSON object"),
        (
            "usage-events",
            raw(envelope("feature_used", {"feature": "x" * MAX_EVENT_BYTES})),
            "too_large",
            "limit is 65536",
        ),
        ("usage-events", raw(envelope("skipped_track")), "unknown_type", "'skipped_track'"),
        ("usage-events", raw(envelope("order_completed")), "unknown_type", "feature_used"),
        ("support-events", raw({**envelope("nps_submitted"), "type": 7}), "unknown_type", "7"),
        ("usage-events", raw({"event_id": "e", "user_id": "u"}), "missing_field", "type"),
        (
            "usage-events",
            raw({k: v for k, v in envelope("session_ended").items() if k != "event_id"}),
            "missing_field",
            "event_id: field required",
        ),
        (
            "usage-events",
            raw({k: v for k, v in envelope("session_ended").items() if k != "occurred_at"}),
            "missing_field",
            "occurred_at: field required",
        ),
        ("usage-events", raw(envelope("feature_used")), "missing_field", "properties.feature"),
        (
            "purchase-events",
            raw(envelope("order_completed", {"order_id": "o", "items": [], "total": 0})),
            "invalid_value",
            "items",
        ),
        (
            "purchase-events",
            raw(
                envelope(
                    "order_completed",
                    {"order_id": "o", "items": [{"sku": "a"}], "total": 1, "currency": "EUR"},
                )
            ),
            "missing_field",
            "properties.items.0.price: field required",
        ),
        (
            "usage-events",
            raw(envelope("feature_used", {"feature": "skip", "quantity": "3"})),
            "wrong_type",
            'properties.quantity: input should be a valid integer (got "3")',
        ),
        (
            "usage-events",
            raw(envelope("feature_used", {"feature": "skip", "quantity": True})),
            "wrong_type",
            "integer",
        ),
        (
            "usage-events",
            raw(envelope("feature_used", {"feature": "skip", "quantity": 2.5})),
            "wrong_type",
            "integer",
        ),
        ("usage-events", raw(envelope("session_ended", event_id=42)), "wrong_type", "event_id"),
        ("usage-events", raw(envelope("session_ended", user_id=None)), "wrong_type", "user_id"),
        (
            "usage-events",
            raw(envelope("session_ended", properties="none")),
            "wrong_type",
            "properties",
        ),
        (
            "usage-events",
            raw(envelope("workflow_started", {"workflow": "w", "critical": "yes"})),
            "wrong_type",
            "properties.critical",
        ),
        (
            "usage-events",
            raw(envelope("session_ended", occurred_at=1_762_070_400)),
            "wrong_type",
            "occurred_at: must be an RFC 3339 timestamp string with an offset (got 1762070400)",
        ),
        (
            "purchase-events",
            raw(envelope("trial_started", {"plan": "pro", "trial_ends_at": "2026-12-01T10:00"})),
            "naive_timestamp",
            "properties.trial_ends_at",
        ),
        (
            "usage-events",
            raw(envelope("session_ended", occurred_at="2026-11-02T09:00:00")),
            "naive_timestamp",
            "timezone",
        ),
        (
            "usage-events",
            raw(envelope("session_ended", occurred_at="02/11/2026 09:00")),
            "wrong_type",
            "occurred_at",
        ),
        (
            "usage-events",
            raw(envelope("session_ended", occurred_at="2226-11-02T09:00:00Z")),
            "out_of_range",
            "occurred_at: input should be less than 2100-01-01T00:00:00Z",
        ),
        (
            "usage-events",
            raw(envelope("session_ended", occurred_at="1970-01-01T00:00:00Z")),
            "out_of_range",
            "greater than or equal to 2000-01-01T00:00:00Z",
        ),
        (
            "purchase-events",
            raw(envelope("trial_started", {"plan": "pro", "trial_ends_at": "2026-12-01"})),
            "wrong_type",
            "properties.trial_ends_at: input should be a valid datetime",
        ),
        (
            "support-events",
            raw(envelope("nps_submitted", {"score": 11})),
            "out_of_range",
            "properties.score: input should be less than or equal to 10 (got 11)",
        ),
        ("support-events", raw(envelope("nps_submitted", {"score": -1})), "out_of_range", "score"),
        (
            "usage-events",
            raw(envelope("feature_used", {"feature": "skip", "quantity": 0})),
            "out_of_range",
            "quantity",
        ),
        (
            "usage-events",
            raw(envelope("quota_usage", {"resource": "gb", "used": -1, "limit": 10})),
            "out_of_range",
            "used",
        ),
        (
            "usage-events",
            raw(envelope("quota_usage", {"resource": "gb", "used": 1, "limit": 0})),
            "out_of_range",
            "limit",
        ),
        (
            "support-events",
            raw(envelope("ticket_opened", {"ticket_id": "t", "severity": "critical"})),
            "invalid_value",
            "'low', 'normal', 'high' or 'urgent'",
        ),
        (
            "profile-events",
            raw(envelope("consent_updated", {"channel": "sms", "granted": True})),
            "invalid_value",
            "properties.channel",
        ),
        (
            "profile-events",
            raw(envelope("profile_updated", {"timezone": "Mars/Olympus"})),
            "invalid_value",
            "IANA time zone",
        ),
        (
            "profile-events",
            raw(envelope("profile_updated", {"country": "Germany"})),
            "invalid_value",
            "country",
        ),
        (
            "purchase-events",
            raw(envelope("subscription_started", {"plan": "p", "billing_period": "weekly"})),
            "invalid_value",
            "billing_period",
        ),
        (
            "purchase-events",
            raw(
                envelope(
                    "order_completed",
                    {
                        "order_id": "o",
                        "items": [{"sku": "a", "price": 1}],
                        "total": 1,
                        "currency": "eur",
                    },
                )
            ),
            "invalid_value",
            "currency",
        ),
        ("usage-events", raw(envelope("session_ended", event_id="")), "invalid_value", "event_id"),
        (
            "usage-events",
            raw(envelope("session_ended", user_id="u" * 129)),
            "invalid_value",
            "at most 128",
        ),
        (
            "usage-events",
            raw(envelope("onboarding_step_completed", {"step": "s", "index": 5, "total": 4})),
            "invalid_value",
            "index 5 is past total 4",
        ),
        (
            "usage-events",
            raw(envelope("feature_used", {"feature": {"a": DEEP}})),
            "too_deep",
            "too deeply",
        ),
        (
            "usage-events",
            raw(envelope("feature_used", {"feature": [[[[[[[[[[]]]]]]]]]]})),
            "wrong_type",
            "properties.feature",
        ),
    ],
)
def test_invalid_events_are_refused_with_a_code_and_a_readable_reason(
    topic: str, payload: bytes, code: str, reason_part: str
) -> None:
    with pytest.raises(InvalidEvent) as refused:
        decode_event(topic, payload)
    assert refused.value.code == code
    assert reason_part in refused.value.reason
    assert "\n" not in refused.value.reason
    assert "https://" not in refused.value.reason, "no pydantic URLs in reasons"


def test_an_unknown_topic_is_refused() -> None:
    with pytest.raises(InvalidEvent) as refused:
        decode_event("clicks", raw(envelope("session_ended")))
    assert refused.value.code == "unknown_topic"
    assert "usage-events" in refused.value.reason


def test_many_problems_are_summarised_not_dumped() -> None:
    with pytest.raises(InvalidEvent) as refused:
        decode_event(
            "support-events",
            raw({"event_id": "", "user_id": "", "type": "ticket_opened", "occurred_at": "x"}),
        )
    assert refused.value.reason.count(";") == 2
    assert "more)" in refused.value.reason


def test_models_built_in_python_encode_to_the_wire_format() -> None:
    event = FeatureUsed(
        event_id="e-1",
        user_id="u-1",
        occurred_at=dt.datetime(2026, 11, 2, 9, tzinfo=dt.UTC),
        properties=FeatureUsedProperties(feature="skip"),
    )
    document = orjson.loads(encode_event(event))
    assert document == {
        "event_id": "e-1",
        "user_id": "u-1",
        "type": "feature_used",
        "occurred_at": "2026-11-02T09:00:00Z",
        "properties": {"feature": "skip", "quantity": 1},
    }


def test_python_construction_refuses_naive_times() -> None:
    with pytest.raises(ValueError, match="timezone"):
        SessionEnded(event_id="e", user_id="u", occurred_at=dt.datetime(2026, 1, 1))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_is_valid_and_on_its_own_topic(path: Path) -> None:
    for line in path.read_bytes().splitlines():
        document = orjson.loads(line)
        assert document.pop("topic") == path.stem
        validate_event(path.stem, document)
        decode_event(path.stem, orjson.dumps(document))


def test_the_examples_cover_every_event_type() -> None:
    seen = {
        f"{EVENT_TYPES_BY_TOPIC_SHORT[p.stem]}.{orjson.loads(line)['type']}"
        for p in EXAMPLES
        for line in p.read_bytes().splitlines()
    }
    assert seen == set(EVENT_TYPES)
    assert {p.stem for p in EXAMPLES} == set(INPUT_TOPICS)


EVENT_TYPES_BY_TOPIC_SHORT = {cls.topic: cls.short_topic for cls in EVENT_TYPES.values()}


@given(events())
def test_every_accepted_event_round_trips_through_json(drawn: tuple[str, dict[str, Any]]) -> None:
    topic, document = drawn
    event = decode_event(topic, orjson.dumps(document))
    again = decode_event(topic, encode_event(event))
    assert again == event
    assert encode_event(again) == encode_event(event)


@given(st.sampled_from(INPUT_TOPICS), st.binary(max_size=2048))
def test_arbitrary_bytes_raise_only_the_validation_error(topic: str, payload: bytes) -> None:
    assert_refused_cleanly_or_accepted(topic, payload)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)


@given(
    events(),
    st.sampled_from(["event_id", "user_id", "type", "occurred_at", "properties"]),
    json_values,
)
def test_any_field_replaced_by_any_json_raises_only_the_validation_error(
    drawn: tuple[str, dict[str, Any]], field: str, value: Any
) -> None:
    topic, document = drawn
    document[field] = value
    # json, not orjson: the values include integers beyond 64 bits, as a producer may send
    assert_refused_cleanly_or_accepted(topic, json.dumps(document).encode())


def assert_refused_cleanly_or_accepted(topic: str, payload: bytes) -> None:
    """decode_event either returns an event or raises InvalidEvent with a code and reason."""
    refused: InvalidEvent | None = None
    try:
        decode_event(topic, payload)
    except InvalidEvent as error:
        refused = error
    if refused is not None:
        assert refused.code
        assert refused.reason


def test_order_items_are_typed() -> None:
    document = orjson.loads(
        (topics_dir() / "examples" / "purchase-events.jsonl").read_bytes().splitlines()[1]
    )
    document.pop("topic")
    order = decode_event("purchase-events", orjson.dumps(document))
    assert isinstance(order, OrderCompleted)
    assert [item.sku for item in order.properties.items] == ["camera-x", "sd-card-64"]
    assert order.properties.items[1].quantity == 2


# --- one decoding for every shell (issue 19) ---------------------------------------------


@pytest.mark.parametrize(
    ("properties", "code", "reason_part"),
    [
        (b'{"feature": "skip", "quantity": NaN}', "not_json", "NaN and Infinity are not JSON"),
        (b'{"feature": "skip", "quantity": -Infinity}', "not_json", "are not JSON numbers"),
        (b'{"feature": "skip", "quantity": 1e30}', "wrong_type", "valid integer (got 1e+30)"),
        (b'{"feature": "NaN Infinity"}', None, ""),  # the words inside a string are fine
    ],
)
def test_nan_and_infinity_are_not_json(
    properties: bytes, code: str | None, reason_part: str
) -> None:
    payload = (
        b'{"event_id": "e", "user_id": "u", "type": "feature_used", '
        b'"occurred_at": "2026-11-02T09:00:00Z", "properties": ' + properties + b"}"
    )
    if code is None:
        decode_event("usage-events", payload)
        return
    with pytest.raises(InvalidEvent) as refused:
        decode_event("usage-events", payload)
    assert (refused.value.code, reason_part in refused.value.reason) == (code, True)


def test_a_float_too_large_for_a_double_is_out_of_range_even_where_any_number_goes() -> None:
    document = envelope("profile_updated", {"attributes": {"seats": 1}})
    payload = raw(document).replace(b'"seats":1', b'"seats":1e400')
    with pytest.raises(InvalidEvent) as refused:
        decode_event("profile-events", payload)
    assert refused.value.code == "out_of_range"
    assert refused.value.reason == (
        "properties.attributes.seats: input should be a finite number (got inf)"
    )


def test_a_leading_byte_order_mark_is_ignored() -> None:
    event = decode_event("usage-events", BOM + raw(envelope("session_ended")))
    assert event.type == "session_ended"


def test_a_line_names_its_topic_or_is_given_one() -> None:
    line = b'{"topic": "usage-events", ' + raw(envelope("session_ended"))[1:]
    assert decode_line(line)[0] == "usage-events"
    assert decode_line(BOM + line)[0] == "usage-events"
    assert decode_line(raw(envelope("session_ended")), "usage-events")[0] == "usage-events"
    with pytest.raises(InvalidEvent) as refused:
        decode_line(raw(envelope("session_ended")))
    assert refused.value.code == "missing_field"
    assert refused.value.reason.startswith("topic: field required")
