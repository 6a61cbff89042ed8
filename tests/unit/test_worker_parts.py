"""The worker's pure parts: event-time order across input topics, the timer schedule,
how settings become faust's configuration, and which changelog records a cut-off
worker wrote late."""

from __future__ import annotations

import asyncio
import logging
import struct
import time
from types import SimpleNamespace
from typing import Any, cast

import faust
import pytest
from pydantic import SecretStr

from triggerstream.settings import Settings
from triggerstream.worker import session as session_module
from triggerstream.worker.app import build_app, credentials, rocksdb_options
from triggerstream.worker.changelog import GENERATION, Generations
from triggerstream.worker.merge import FIRST, EventTimeMerge
from triggerstream.worker.schedule import RETRY_AFTER, TimerSchedule
from triggerstream.worker.session import GroupSession

TOPICS = ["usage", "purchase", "profile"]


def merge_with(*messages: tuple[str, float, str]) -> EventTimeMerge[str]:
    merge: EventTimeMerge[str] = EventTimeMerge(TOPICS)
    for topic, at, name in messages:
        merge.add(topic, 0, at, name)
    return merge


def test_earliest_event_time_goes_first_while_every_input_has_a_message() -> None:
    merge = merge_with(("usage", 30, "skip"), ("purchase", 20, "order"), ("profile", 10, "consent"))
    # Once the profile input is empty it may still bring something before 20: wait.
    assert list(merge.release(0, lambda tp: False)) == ["consent"]
    assert list(merge.release(0, lambda tp: True)) == ["order", "skip"]


def test_a_message_waits_while_another_input_may_still_hold_an_earlier_one() -> None:
    merge = merge_with(("purchase", 20, "order"))
    assert list(merge.release(0, lambda tp: False)) == []
    assert merge.pending(0) == 1
    # ... until the silent inputs are known to be read to their end
    assert list(merge.release(0, lambda tp: True)) == ["order"]


def test_an_input_read_to_its_end_is_not_waited_for() -> None:
    merge = merge_with(("purchase", 20, "order"), ("usage", 25, "skip"))
    ended = {("profile", 0)}
    assert list(merge.release(0, lambda tp: tuple(tp) in ended)) == ["order"]
    ended.add(("purchase", 0))
    assert list(merge.release(0, lambda tp: tuple(tp) in ended)) == ["skip"]


def test_a_topic_partitions_own_order_is_never_changed() -> None:
    merge = merge_with(
        ("usage", 50, "late-clock"),
        ("usage", 40, "earlier-time"),
        ("purchase", 45, "order"),
        ("profile", 60, "profile"),
    )
    assert list(merge.release(0, lambda tp: True)) == [
        "order",  # 45 < 50: the usage head is 50 (the 40 behind it must wait its turn)
        "late-clock",
        "earlier-time",
        "profile",
    ]


def test_invalid_input_at_the_head_goes_at_once_and_drain_releases_everything() -> None:
    merge = merge_with(("usage", FIRST, "garbage"), ("usage", 10, "skip"))
    assert list(merge.release(0, lambda tp: False)) == ["garbage"]
    assert list(merge.release(0, lambda tp: False, drain=True)) == ["skip"]


def test_partitions_are_independent_and_clear_gives_everything_back() -> None:
    merge: EventTimeMerge[str] = EventTimeMerge(TOPICS)
    merge.add("usage", 0, 1, "a")
    merge.add("usage", 1, 2, "b")
    assert merge.partitions() == {0, 1}
    merge.forget_partitions({1})
    assert merge.partitions() == {1}
    assert merge.clear() == ["b"]
    assert merge.pending() == 0


def test_the_schedule_wakes_users_in_due_order_and_only_their_latest_due_time() -> None:
    schedule = TimerSchedule()
    schedule.set("ann", 100)
    schedule.set("bob", 50)
    schedule.set("ann", 30)  # ann's timer moved earlier
    schedule.set("cy", 70)
    schedule.set("cy", None)  # cy's timer is gone
    assert schedule.pop_due(60) == ["ann", "bob"]
    assert schedule.pop_due(99) == []  # ann's old entry at 100 is stale: not woken
    # no answer to the wake-up: asked again after RETRY_AFTER
    assert sorted(schedule.pop_due(60 + RETRY_AFTER)) == ["ann", "bob"]
    schedule.set("ann", None)
    schedule.set("bob", 500)
    assert len(schedule) == 1


def test_rocksdb_memory_is_shared_out_over_tables_and_partitions() -> None:
    options = rocksdb_options(Settings(rocksdb_memory=512), partitions=8)
    mib = 1024 * 1024
    # 512 MiB over 24 databases (3 tables x 8 partitions): 21.3 MiB each, half cache.
    each = 512 * mib // 24
    assert options["block_cache_size"] == each // 2
    assert options["write_buffer_size"] * options["max_write_buffer_number"] == each // 2 // 2 * 2


def test_security_settings_become_faust_credentials() -> None:
    assert credentials(Settings()) is None
    sasl = credentials(
        Settings(
            security_protocol="SASL_PLAINTEXT",
            sasl_mechanism="SCRAM-SHA-512",
            sasl_username="svc",
            sasl_password=SecretStr("s3cret"),
        )
    )
    assert isinstance(sasl, faust.SASLCredentials)
    assert (sasl.username, sasl.password, sasl.mechanism.value) == (
        "svc",
        "s3cret",
        "SCRAM-SHA-512",
    )
    assert sasl.ssl_context is None
    assert isinstance(credentials(Settings(security_protocol="SSL")), faust.SSLCredentials)


def test_the_faust_app_takes_the_settings() -> None:
    settings = Settings(
        kafka_bootstrap="k1:9092,k2:9092",
        topic_prefix="prod.",
        session_timeout=10,
        web_port=7000,
        web_host="127.0.0.1",
        processing_guarantee="exactly_once",
    )
    app = build_app(settings, partitions=12, replicas=3)
    assert app.conf.id == "prod.triggerstream"
    assert [str(url) for url in app.conf.broker] == ["kafka://k1:9092", "kafka://k2:9092"]
    assert app.conf.topic_partitions == 12
    assert app.conf.topic_replication_factor == 3
    assert app.conf.broker_session_timeout == 10
    assert app.conf.web_port == 7000
    assert app.conf.web_bind == "127.0.0.1"
    assert str(app.conf.processing_guarantee.value) == "exactly_once"


def test_the_recent_states_are_bounded_by_their_stored_size_not_only_by_users(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from triggerstream.core.state import UserState
    from triggerstream.worker import store

    monkeypatch.setattr(store, "RECENT_BYTES", 1000)
    recent = store.RecentStates()
    for n in range(5):
        recent.remember((0, f"u{n}".encode()), (UserState(), {}), 300)
    # 1,500 bytes of states: the two least recent are forgotten.
    assert [recent.get((0, f"u{n}".encode())) is not None for n in range(5)] == [
        False,
        False,
        True,
        True,
        True,
    ]
    assert recent.bytes == 900
    recent.remember((0, b"u2"), (UserState(), {}), 600)  # a state grew: it is the most recent now
    assert recent.get((0, b"u3")) is None
    assert recent.get((0, b"u2")) is not None
    assert recent.get((1, b"u2")) is None  # the same user id on another partition
    assert recent.bytes == 900
    recent.forget((0, b"u2"))
    assert (len(recent), recent.bytes) == (1, 300)


def test_with_max_idle_a_read_message_waits_that_long_for_an_input_with_nothing_buffered() -> None:
    now = [100.0]
    merge: EventTimeMerge[str] = EventTimeMerge(TOPICS, max_idle=2.0, clock=lambda: now[0])
    merge.add("usage", 0, 600.0, "skip")  # read at 100
    # Every other input read to its end: without max_idle the skip would go now.
    assert list(merge.release(0, lambda tp: True)) == []
    assert merge.idled() == set()
    now[0] = 101.4
    merge.add("profile", 0, 0.0, "profile ten minutes earlier")  # a slower producer
    assert list(merge.release(0, lambda tp: True)) == []  # the purchases may still bring one
    now[0] = 102.0  # the partition was held since the skip was read
    assert merge.idled() == {0}
    assert list(merge.release(0, lambda tp: True)) == ["profile ten minutes earlier", "skip"]


def test_max_idle_does_not_hold_a_message_when_every_input_has_one_waiting() -> None:
    merge: EventTimeMerge[str] = EventTimeMerge(TOPICS, max_idle=60.0, clock=lambda: 0.0)
    for topic, at in (("usage", 3.0), ("purchase", 2.0), ("profile", 1.0)):
        merge.add(topic, 0, at, topic)
    assert list(merge.release(0, lambda tp: True)) == ["profile"]


def test_a_schedule_whose_due_times_keep_moving_stays_the_size_of_its_users() -> None:
    schedule = TimerSchedule()
    for event in range(100_000):  # every event moves a user's inactivity timer ahead
        schedule.set(f"u{event % 100}", 1e9 + event)
    assert len(schedule) == 100
    assert len(schedule._heap) <= 2 * 100 + 1024
    # Each user is due once, at the last time it was given (u{k}: 1e9 + 99,900 + k).
    assert schedule.pop_due(1e9 + 99_950) == [f"u{n}" for n in range(51)]
    assert sorted(schedule.pop_due(2e9)) == sorted(f"u{n}" for n in range(100))


def changelog_record(offset: int, generation: int | None, written: float) -> SimpleNamespace:
    headers = [] if generation is None else [(GENERATION, struct.pack(">i", generation))]
    return SimpleNamespace(offset=offset, timestamp=written, headers=headers)


def test_a_changelog_record_a_cut_off_worker_wrote_is_left_out_once_a_newer_owner_wrote(
    caplog: pytest.LogCaptureFixture,
) -> None:
    generations = Generations()
    # w2 owned the partition in generation 7; cut off at 100, the group gave it to w1
    # (generation 8, first write at 107); w2's records of 99-101 arrived at 131.
    read = [
        changelog_record(0, 7, 98.0),
        changelog_record(1, 8, 107.0),
        changelog_record(2, 8, 108.0),
        changelog_record(3, 7, 99.5),
        changelog_record(4, 7, 101.0),
        changelog_record(5, 8, 132.0),
    ]
    kept = generations.current("triggerstream-users-changelog", 3, read)
    assert [r.offset for r in kept] == [0, 1, 2, 5]
    assert "left out 2 changelog record(s) of generation 7" in caplog.text
    assert "triggerstream-users-changelog[3]" in caplog.text
    # The next fetch of the partition remembers generation 8.
    later = generations.current("triggerstream-users-changelog", 3, [changelog_record(6, 7, 101.5)])
    assert later == []


def test_a_group_that_began_again_at_a_lower_generation_is_read_not_left_out() -> None:
    generations = Generations()
    read = [
        changelog_record(0, 41, 1_000.0),
        # The group's offsets expired; a week later it starts again at generation 1.
        changelog_record(1, 1, 1_000.0 + 7 * 86_400),
        changelog_record(2, 1, 1_000.0 + 7 * 86_400 + 1),
        changelog_record(3, 2, 1_000.0 + 7 * 86_400 + 2),
    ]
    assert [r.offset for r in generations.current("c", 0, read)] == [0, 1, 2, 3]


def test_changelog_records_without_a_generation_are_always_kept() -> None:
    generations = Generations()
    read = [changelog_record(0, 9, 50.0), changelog_record(1, None, 10.0)]
    assert [r.offset for r in generations.current("c", 0, read)] == [0, 1]
    # Partitions are independent.
    assert [r.offset for r in generations.current("c", 1, [changelog_record(0, 3, 1.0)])] == [0]


def a_session(monkeypatch: pytest.MonkeyPatch) -> tuple[GroupSession, SimpleNamespace]:
    """A worker's group session over the parts it touches; the producer's connections
    count the times they are reopened."""
    reopened: list[object] = []
    monkeypatch.setattr(session_module, "reconnect_producer", reopened.append)
    given_back: list[bool] = []
    worker = SimpleNamespace(
        lifecycle=SimpleNamespace(ready=True, assigned=True, partitions=[0, 1]),
        app=SimpleNamespace(heard_from_group=time.monotonic() - 7.0),
        settings=SimpleNamespace(session_timeout=6.0, kafka_bootstrap="kafka:9092"),
        intake=SimpleNamespace(give_back=lambda: given_back.append(True)),
        reopened=reopened,
        given_back=given_back,
    )
    return GroupSession(cast(Any, worker)), worker


async def test_a_worker_silent_past_its_session_stops_until_the_group_answers(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "triggerstream.worker")
    session, worker = a_session(monkeypatch)
    await session.check()
    assert not worker.lifecycle.ready
    assert "cut off from the group" in caplog.text
    kept = asyncio.ensure_future(session.kept(0))
    await asyncio.sleep(0.01)
    assert not kept.done(), "a batch must wait for the group's verdict"
    session.answered(True)  # a broker back: still a member
    assert await kept
    assert worker.lifecycle.ready
    assert worker.reopened, "the producer's cut connections are reopened"
    assert not worker.given_back
    assert "still a member" in caplog.text


async def test_a_batch_is_left_behind_as_soon_as_the_partitions_are_lost(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    session, worker = a_session(monkeypatch)
    await session.check()
    acknowledged = asyncio.Event()

    async def storing() -> bool:
        await acknowledged.wait()  # the broker's answer, after TCP's backoff
        return await session.kept(0)

    outcome = asyncio.ensure_future(session.unless_lost(storing(), session.lost))
    await asyncio.sleep(0.01)
    session.answered(False)  # the group gave the partitions on
    assert await asyncio.wait_for(outcome, 1) is False
    assert worker.given_back
    assert not worker.lifecycle.ready
    assert "lost its partitions [0, 1]" in caplog.text

    # A batch begun after the loss keeps what it does.
    async def stored() -> bool:
        return await session.kept(session.lost)

    assert await session.unless_lost(stored(), session.lost) is True
    acknowledged.set()  # the one left behind ends too, and stores nothing
    await asyncio.sleep(0.01)


async def test_a_worker_cut_off_gives_up_its_batch_when_faust_waits_for_it(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    session, worker = a_session(monkeypatch)
    session.give_up()  # a stop while the group answers: nothing to give up
    assert session.lost == 0
    await session.check()
    storing = asyncio.Event()

    async def stuck() -> bool:
        await storing.wait()  # the broker cannot be reached
        return True

    outcome = asyncio.ensure_future(session.unless_lost(stuck(), session.lost))
    await asyncio.sleep(0.01)
    session.give_up()  # SIGTERM while cut off: faust waits for every message in hand
    assert await asyncio.wait_for(outcome, 1) is False
    assert worker.given_back
    assert "it gives them up to stop or rebalance" in caplog.text
    storing.set()
    await asyncio.sleep(0.01)
