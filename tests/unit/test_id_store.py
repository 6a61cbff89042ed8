"""The worker's id store (worker/store.py): a user's event ids kept apart from the state,
written once each, and read back as exactly the ids replay's in-memory state holds."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import rocksdict
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import ROOT
from triggerstream.core.engine import Engine
from triggerstream.core.ids import event_key
from triggerstream.core.state import UserState
from triggerstream.events import decode_event
from triggerstream.rules.load import load_rules
from triggerstream.worker import codec
from triggerstream.worker.changelog import ChangelogBatches
from triggerstream.worker.codec import IDS, Processed
from triggerstream.worker.store import IdsBefore, Kept, RecentStates, StateStore

T0 = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
USER = b"maya"
RULES = load_rules(ROOT / "examples" / "rules.yaml")

# A state as the version before the id store wrote it: the day's ids inside it.
OLD_BLOB = (
    b'{"last_seen_at":1793534400.0,"last_activity":["e2","usage.session_started"],'
    b'"session_open":true,"windows":{"free-skip-limit":[[1793530800.0,1.0]]},'
    b'"seen":[[9190366557526294678,1793527200.0],[616303922679447703,1793530800.0],'
    b'[10485748399309979800,1793534400.0]],"latest_at":1793534400.0}'
)


class _Table:
    def __init__(self, name: str) -> None:
        self.name = name
        self.sent: list[tuple[bytes, bytes | None]] = []


class _Producer:
    def __init__(self, tables: dict[str, _Table]) -> None:
        self.tables = tables

    async def send(self, topic: str, key: bytes, value: bytes | None, *args: Any) -> Any:
        self.tables[topic].sent.append((key, value))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


class _App:
    in_transaction = False

    def __init__(self, tables: dict[str, _Table]) -> None:
        self.producer = _Producer(tables)


TABLES = ("users", "copurchases", "dedupe")


def _open(folder: Path) -> dict[tuple[str, int], rocksdict.Rdict]:
    """Real RocksDB databases for the tables (partition 0), in ``folder``."""
    options = rocksdict.Options(raw_mode=True)
    options.create_if_missing(True)
    return {(name, 0): rocksdict.Rdict(str(folder / name), options=options) for name in TABLES}


def _store(
    folder: Path, databases: dict[tuple[str, int], rocksdict.Rdict] | None = None
) -> StateStore:
    """A store over real RocksDB databases (partition 0), its changelogs recorded: new
    ones in ``folder``, or ``databases`` emptied (opening three costs 0.03 s)."""
    store: Any = object.__new__(StateStore)  # its faust parts replaced by recorders
    tables = {name: _Table(name) for name in TABLES}
    for table in tables.values():
        table.changelog_topic = type(  # type: ignore[attr-defined]
            "Topic", (), {"get_topic_name": lambda self, name=table.name: name}
        )()
    store.app = _App(tables)
    store.users, store.copurchase_table, store.ids = (
        tables["users"],
        tables["copurchases"],
        tables["dedupe"],
    )
    store.users_tracked = 0
    store.erased, store.erased_ids = {}, {}
    store.recent = RecentStates()
    store.changelogs = ChangelogBatches()
    if databases is None:
        databases = _open(folder)
    else:
        for database in databases.values():
            for key in list(database.keys()):
                del database[key]
            assert list(database.keys()) == []
    store.databases = dict(databases)
    built: StateStore = store
    return built


def _event(event_id: str, hours: float, type_: str = "feature_used") -> Any:
    topic = "profile-events" if type_ == "erasure_requested" else "usage-events"
    return decode_event(
        topic,
        orjson.dumps(
            {
                "event_id": event_id,
                "user_id": USER.decode(),
                "type": type_,
                "occurred_at": (T0 + dt.timedelta(hours=hours)).isoformat(),
                "properties": {"feature": "skip"} if type_ == "feature_used" else {},
            }
        ),
    )


Before = IdsBefore | None


async def _store_batch(
    store: StateStore,
    state: UserState | None,
    processed: Processed,
    before: Before,
    stored: bool,
    erased: bool,
) -> None:
    """What the worker's ``_complete`` does for one user: the ids, then the state, then
    an erased user's old ids."""
    await store.write_ids(0, USER, state, processed, before, erased)
    await store.write(0, USER, state, processed, stored)
    if erased:
        await store.erase_ids(0, USER, state, processed)
    _hand_over(store)


def _split(kept: Kept | None) -> tuple[UserState | None, Processed]:
    """A user as the store gave them: (state, processed), or (None, {}) for none."""
    return (None, {}) if kept is None else kept


def _hand_over(store: StateStore) -> None:
    """The changelog writes the store queued, as ``persisted`` hands them to the
    producer (here: to the recorder, in order)."""
    tables = store.app.producer.tables  # type: ignore[attr-defined]
    for (topic, _), records in store.changelogs.queued.items():
        tables[topic].sent.extend((key, value) for key, value, _ in records)
    store.changelogs.queued.clear()


def _rows(store: StateStore) -> dict[bytes, bytes]:
    return dict(store.databases[("dedupe", 0)].items())


def test_an_old_state_is_read_with_its_ids_and_stored_again_without_them(
    tmp_path: Path,
) -> None:
    store = _store(tmp_path)
    store.database(0).put(USER, OLD_BLOB)
    state, processed = _split(store.stored(0, USER))
    assert state is not None
    assert list(state.seen) == [event_key("e0"), event_key("e1"), event_key("e2")]
    before = StateStore.ids_before(state, processed)
    assert before is None  # the id store has none of them yet: all written now
    engine = Engine(RULES)
    assert engine.handle("maya", state, _event("e1", 2)).duplicate
    step = engine.handle("maya", state, _event("e3", 3))
    asyncio.run(_store_batch(store, step.state, processed, before, stored=True, erased=False))

    blob = store.database(0).get(USER)
    assert b"seen" not in orjson.loads(blob)
    assert orjson.loads(blob)["processed"][IDS] == [0, 4]
    assert [len(value) for value in _rows(store).values()] == [4 * 16]  # each id once, one row
    again, _ = _split(store.stored(0, USER))
    assert again is not None
    assert again.seen == state.seen
    assert list(again.seen) == [event_key(f"e{n}") for n in range(4)]
    assert engine.handle("maya", again, _event("e0", 2)).duplicate


def test_a_busy_users_state_is_small_and_each_id_is_written_once(tmp_path: Path) -> None:
    store = _store(tmp_path)
    engine = Engine(RULES)
    state: UserState | None = None
    processed: Processed = {}
    for n in range(500):  # a day of events, one batch each
        before = StateStore.ids_before(state, processed)
        stored = state is not None
        state = engine.handle("maya", state, _event(f"e{n}", n * 24 / 500)).state
        asyncio.run(_store_batch(store, state, processed, before, stored=stored, erased=False))
    assert len(store.ids.sent) == 500  # type: ignore[attr-defined]
    sent: list[tuple[bytes, bytes]] = store.ids.sent  # type: ignore[attr-defined]
    assert sum(len(value) for _, value in sent) == 500 * 16
    assert len(store.database(0).get(USER)) < 2048
    assert _split(store.stored(0, USER))[0].seen == state.seen  # type: ignore[union-attr]
    # A batch of 100 events: their ids are one row, one changelog record.
    before = StateStore.ids_before(state, processed)
    for n in range(100):
        state = engine.handle("maya", state, _event(f"f{n}", 24 + n / 100)).state
    asyncio.run(_store_batch(store, state, processed, before, stored=True, erased=False))
    assert len(store.ids.sent) == 501  # type: ignore[attr-defined]
    assert _split(store.stored(0, USER))[0].seen == state.seen  # type: ignore[union-attr]


def test_an_erased_users_ids_are_deleted(tmp_path: Path) -> None:
    store = _store(tmp_path)
    engine = Engine(RULES)
    state = engine.handle("maya", None, _event("e0", 0)).state
    processed: Processed = {}
    asyncio.run(_store_batch(store, state, processed, None, stored=False, erased=False))
    assert _rows(store)
    step = engine.handle("maya", state, _event("bye", 1, "erasure_requested"))
    assert step.state is None
    before = StateStore.ids_before(state, processed)
    asyncio.run(_store_batch(store, None, {}, before, stored=True, erased=True))
    assert _rows(store) == {}
    assert store.database(0).get(USER) is None
    # The changelog holds a tombstone for the id's row.
    assert store.ids.sent[-1][1] is None  # type: ignore[attr-defined]


def test_a_user_id_that_begins_another_keeps_its_rows_apart(tmp_path: Path) -> None:
    store = _store(tmp_path)
    engine = Engine(RULES)
    for user in (b"maya", b"maya\x00\x00\x00\x00\x00\x00\x00\x00\x00"):
        state = engine.handle(user.decode(), None, _event(f"{user!r}", 0)).state
        processed: Processed = {}
        asyncio.run(store.write_ids(0, user, state, processed, None, False))
        asyncio.run(store.write(0, user, state, processed, False))
    erased = asyncio.run(store.erase_ids(0, USER, None, {}))
    assert len(erased) == 1
    assert len(_rows(store)) == 1


@pytest.fixture(scope="module")
def id_databases(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[tuple[str, int], rocksdict.Rdict]]:
    """The databases the property's examples share, one after the other."""
    databases = _open(tmp_path_factory.mktemp("store"))
    yield databases
    for database in databases.values():
        database.close()


BATCH = st.lists(
    st.tuples(
        st.sampled_from([f"e{n}" for n in range(12)]),  # ids used again: duplicates
        st.floats(min_value=0, max_value=24 * 6, allow_nan=False),  # six days, any order
        st.sampled_from(["feature_used"] * 12 + ["erasure_requested"]),
    ),
    min_size=1,
    max_size=8,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    batches=st.lists(st.tuples(BATCH, st.booleans()), min_size=1, max_size=25),
    cached=st.booleans(),
)
def test_the_ids_read_back_are_replays_and_give_its_answers(
    id_databases: dict[tuple[str, int], rocksdict.Rdict], batches: list[Any], cached: bool
) -> None:
    """Batches of events with ids used again, out of order over six days (so ids are
    forgotten, and an id comes back after more than a day) and erasures, some crashing
    once after their ids were written and before their state was: after every batch the
    store, read cold or kept decoded, holds exactly the ids replay's state holds, in its
    order, and every duplicate answer was replay's."""
    store = _store(Path("unused"), id_databases)  # each example starts with them empty
    replay_engine, worker_engine = Engine(RULES), Engine(RULES)
    replayed: UserState | None = None
    for batch, crashes in batches:
        if crashes:  # its ids written, then the worker died: nothing of it is read
            state, processed = _split(store.stored(0, USER))
            before = StateStore.ids_before(state, processed)
            erased = False
            for event_id, hours, type_ in batch:
                step = Engine(RULES).handle("maya", state, _event(event_id, hours, type_))
                if not step.duplicate:
                    state = step.state
                    if state is None:  # as the worker: an erased user starts afresh
                        erased, processed = True, {}
            asyncio.run(store.write_ids(0, USER, state, processed, before, erased))
            store.recent.clear()  # as the worker does after a failed batch
        state, processed = _split(store.load(0, USER) if cached else store.stored(0, USER))
        before = StateStore.ids_before(state, processed)
        stored, erased = state is not None, False
        for event_id, hours, type_ in batch:
            event = _event(event_id, hours, type_)
            expected = replay_engine.handle("maya", replayed, event)
            got = worker_engine.handle("maya", state, event)
            assert got.duplicate == expected.duplicate
            if not expected.duplicate:
                replayed, state = expected.state, got.state
                if state is None:
                    erased, processed = True, {}
        asyncio.run(_store_batch(store, state, processed, before, stored, erased))
        back, back_processed = _split(store.stored(0, USER))
        if replayed is None:
            assert back is None
        else:
            assert back is not None
            assert list(back.seen.items()) == list(replayed.seen.items())
            first, end = back_processed[IDS]
            assert end - first == len(back.seen)
    # Forgotten ids' rows go a range at a time: never many left behind.
    ids = sum(len(value) // 16 for value in _rows(store).values())
    live = 0 if replayed is None else len(replayed.seen)
    assert ids - live < 2 * 64 + 8


def test_the_recent_states_count_the_ids_they_hold(tmp_path: Path) -> None:
    store = _store(tmp_path)
    state = UserState(seen=OrderedDict((n, 0.0) for n in range(100)))
    asyncio.run(_store_batch(store, state, {}, None, stored=False, erased=False))
    assert store.recent.bytes >= 100 * 40


def test_a_state_stored_by_the_previous_version_reads_and_stores_the_same_bytes() -> None:
    """``processed`` was a field of the state, its last; now the worker keeps it beside
    the state, as the document's last key: the stored bytes are the same."""
    blob = (
        b'{"plan":"free","last_seen_at":1793534400.0,"latest_at":1793534400.0,'
        b'"processed":{"usage-events":[2,41],"#ids":[7,12]}}'
    )
    state, processed = codec.decode(blob)
    assert state.plan == "free"
    assert processed == {"usage-events": [2, 41], IDS: [7, 12]}
    assert codec.encode(state, processed) == blob
    assert codec.encode(state, {}) == blob[: blob.index(b',"processed"')] + b"}"
