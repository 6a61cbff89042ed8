"""The engine's records encode to exactly the bytes of the contract's pydantic models.

The engine builds plain slotted records (triggerstream.core.records) and encodes them
with orjson; readers validate them against the models of triggerstream.records and the
JSON Schemas generated from those. Byte for byte equality with ``model_dump_json()``
keeps the two from drifting: any field, order, float or time format that differs fails.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from triggerstream import records as models
from triggerstream.core import records
from triggerstream.core.engine import Engine
from triggerstream.replay import Outputs, Replay, read_lines
from triggerstream.rules.load import load_rules
from triggerstream.traffic import generate

ROOT = Path(__file__).resolve().parents[2]

text = st.text(max_size=40)
maybe_text = st.none() | text
times = st.datetimes(
    min_value=dt.datetime(2000, 1, 1),
    max_value=dt.datetime(2099, 12, 31),
    timezones=st.just(dt.UTC),
)
amounts = st.floats(min_value=0, max_value=1e12, allow_nan=False, allow_infinity=False)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53), max_value=2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | text
)
facts = st.dictionaries(text, scalars | st.lists(scalars, max_size=3), max_size=5)
channels = st.sampled_from(["in_app", "push", "email"])


@st.composite
def triggers(draw: st.DrawFn) -> records.Trigger:
    return records.Trigger(
        trigger_id=draw(text),
        user_id=draw(text),
        rule_id=draw(text),
        offer=records.Offer(
            id=draw(text),
            kind=draw(st.sampled_from(["upsell", "cross_sell"])),
            product=draw(maybe_text),
            title=draw(text),
            benefits=draw(st.lists(text, max_size=3)),
            discount_percent=draw(st.floats(min_value=0, max_value=100)),
            expires_at=draw(times),
            items=[
                records.OfferItem(sku=sku, score=score)
                for sku, score in draw(st.lists(st.tuples(text, amounts), max_size=4))
            ],
        ),
        channel=draw(channels),
        experiment=draw(maybe_text),
        variant=draw(maybe_text),
        reason=records.TriggerReason(summary=draw(text), facts=draw(facts)),
        personalization=records.Personalization(
            first_name=draw(maybe_text),
            locale=draw(maybe_text),
            country=draw(maybe_text),
            plan=draw(maybe_text),
        ),
        caused_by=records.CausedBy(event_id=draw(text), type=draw(text), occurred_at=draw(times)),
        triggered_at=draw(times),
        emitted_at=draw(times),
    )


decisions = st.builds(
    records.Decision,
    decision_id=text,
    user_id=text,
    rule_id=maybe_text,
    outcome=st.sampled_from(["emitted", "suppressed", "holdout", "erased"]),
    reason=st.none() | st.sampled_from(["cooldown", "no_channel", "holdout"]),
    detail=text,
    trigger_id=maybe_text,
    at=times,
    channel=st.none() | channels,
    experiment=maybe_text,
    variant=maybe_text,
    rules_version=maybe_text,
)
attributions = st.builds(
    records.Attribution,
    trigger_id=text,
    user_id=text,
    rule_id=text,
    offer_id=text,
    channel=st.none() | channels,
    experiment=maybe_text,
    variant=maybe_text,
    group=st.sampled_from(["treated", "holdout"]),
    revenue=amounts,
    currency=maybe_text,
    converted_at=times,
    lag_seconds=amounts,
    order_id=maybe_text,
    plan=maybe_text,
    sku=maybe_text,
)

MODELS: dict[type, type[models.Record]] = {
    records.Trigger: models.Trigger,
    records.Decision: models.Decision,
    records.Attribution: models.Attribution,
}


def model_bytes(record: Any) -> bytes:
    """What the contract's model writes for the same values."""
    model = MODELS[type(record)]
    return model.model_validate(dataclasses.asdict(record)).model_dump_json().encode()


@settings(max_examples=300, deadline=None)
@given(st.one_of(triggers(), decisions, attributions))
def test_a_record_encodes_to_its_models_bytes(record: Any) -> None:
    assert record.to_json() == model_bytes(record)


def test_every_record_of_a_month_of_demo_traffic_is_its_models_bytes(tmp_path: Path) -> None:
    path = tmp_path / "month.jsonl"
    generate(path, events=40_000, users=2_000, seed=7)
    made: list[Any] = []
    replay = Replay(Engine(load_rules(ROOT / "examples" / "rules.yaml")), Outputs(triggers=None))
    original = replay._take

    def keep(user: str, step: Any) -> None:
        made.extend([*step.decisions, *step.triggers, *step.attributions])
        original(user, step)

    replay._take = keep  # type: ignore[method-assign]
    replay.feed(read_lines([path]))
    replay.finish()
    kinds = {type(record) for record in made}
    # Attributions are rare in this traffic: the property test above and every scenario
    # of tests/unit (tests/engine_support.py reads each line back) cover theirs.
    assert kinds >= {records.Decision, records.Trigger}, kinds
    for record in made:
        assert record.to_json() == model_bytes(record)
