"""The worker's inspector (docs/contract.md section 16): one owned user's explain view
from the stored state, read between batches; 404 naming the partition otherwise; the
page at ``/`` self-contained."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
from pathlib import Path
from typing import Any

import faust
import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from tests.scenarios import RULES, scenario_events
from tests.unit.test_explain import DECISION_KEYS, KEYS, replayed, write
from triggerstream.core.engine import Engine
from triggerstream.core.state import UserState
from triggerstream.explain import read_user
from triggerstream.explain.kept import kept_decisions
from triggerstream.rules.load import load_rules
from triggerstream.topics import input_partitions, partition_of
from triggerstream.traffic import history
from triggerstream.worker.codec import encode
from triggerstream.worker.inspector import Inspector, page
from triggerstream.worker.web import add_routes

PARTITIONS = input_partitions()


class FakeWorker:
    """What the inspector uses of a worker: partitions, the processing lock, the
    store's databases and an engine per partition."""

    def __init__(self, rows: dict[int, dict[bytes, bytes]], owned: list[int] | None) -> None:
        self.partition_count = PARTITIONS
        self.processing = asyncio.Lock()
        self.rows = rows
        self.owned = owned
        self.lifecycle = self
        self.store = self
        self.engines = Engine(load_rules(RULES))

    def readiness(self) -> list[int] | None:
        return self.owned

    def database(self, partition: int) -> dict[bytes, bytes]:
        return self.rows.setdefault(partition, {})

    def engine(self, partition: int) -> Engine:
        return self.engines


@pytest.fixture(scope="module")
def acme(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """acme's state and decisions after the scenarios, as replay makes them."""
    path = write(tmp_path_factory.mktemp("inspector") / "events.jsonl", scenario_events())
    return read_user(Engine(load_rules(RULES)), "acme", [path], partitions=PARTITIONS)


def worker_with(user_id: str, state: UserState, owned: list[int] | None = None) -> FakeWorker:
    home = partition_of(user_id, PARTITIONS)
    rows = {home: {user_id.encode(): encode(state, {"usage": [home, 41]})}}
    return FakeWorker(rows, list(range(PARTITIONS)) if owned is None else owned)


def test_the_state_keeps_the_emitted_decisions_as_replay_made_them(acme: Any) -> None:
    kept = kept_decisions("acme", acme.state)
    made = [d for d in acme.decisions if d["outcome"] in ("emitted", "holdout")]
    assert [d["rule_id"] for d in made] == ["storage-80", "storage-95"]
    unkept = ("detail", "rules_version")
    assert [{k: v for k, v in d.items() if k not in unkept} for d in made] == [
        {k: v for k, v in d.items() if k not in (*unkept, "offer_id")} for d in kept
    ]
    assert made[0]["rules_version"] == load_rules(RULES).version
    assert all(d["rules_version"] is None for d in kept)
    assert all(set(d) == DECISION_KEYS | {"offer_id"} for d in kept)
    assert kept[0]["detail"].startswith("offer ")


async def test_an_owned_user_is_explained_from_the_stored_state(acme: Any) -> None:
    inspector = Inspector(worker_with("acme", acme.state))  # type: ignore[arg-type]
    status, view = await inspector.user("acme")
    assert status == 200
    assert set(view) >= KEYS
    assert view["user_id"] == "acme"
    assert view["partition"] == partition_of("acme", PARTITIONS)
    assert view["state"]["now_is"] == "the worker's clock"
    assert view["state"]["quotas"]["storage_gb"] == {"used": 962, "limit": 1000, "fraction": 0.962}
    rules = {rule["rule_id"]: rule for rule in view["rules"]}
    assert "storage_gb" in rules["storage-80"]["detail"]
    assert [d["rule_id"] for d in view["decisions"]] == ["storage-80", "storage-95"]
    assert "attribution" in view["decisions_are"]
    assert "7 days" in view["decisions_are"]
    assert inspector.held < 0.05, "the lock is held only to read one user"
    orjson.dumps(view)  # JSON as it is


async def test_a_read_waits_for_the_batch_under_way(acme: Any) -> None:
    worker = worker_with("acme", acme.state)
    inspector = Inspector(worker)  # type: ignore[arg-type]
    async with worker.processing:  # a batch
        read = asyncio.ensure_future(inspector.user("acme"))
        await asyncio.sleep(0.01)
        assert not read.done()
        # The batch stores a new state of the user before it ends.
        changed = UserState(plan="team", first_name="Acme Two")
        worker.rows[partition_of("acme", PARTITIONS)][b"acme"] = encode(changed, {})
    status, view = await read
    assert status == 200
    assert view["state"]["profile"]["first_name"] == "Acme Two"


async def test_a_user_on_a_partition_not_owned_is_404_naming_it(acme: Any) -> None:
    home = partition_of("acme", PARTITIONS)
    others = [p for p in range(PARTITIONS) if p != home]
    inspector = Inspector(worker_with("acme", acme.state, owned=others))  # type: ignore[arg-type]
    status, body = await inspector.user("acme")
    assert status == 404
    assert body["error"] == "not_owned"
    assert body["partition"] == home
    assert body["partitions_owned"] == others
    assert f"partition {home}" in body["detail"]
    assert "state" not in body


async def test_a_user_without_state_is_404_saying_so(acme: Any) -> None:
    inspector = Inspector(worker_with("acme", acme.state))  # type: ignore[arg-type]
    status, body = await inspector.user("nobody")
    assert status == 404
    assert body["error"] == "no_state"
    assert body["partition"] == partition_of("nobody", PARTITIONS)
    assert "keeps no state for user nobody" in body["detail"]


async def test_not_ready_is_503_as_readyz() -> None:
    inspector = Inspector(FakeWorker({}, owned=None))  # type: ignore[arg-type]
    status, body = await inspector.user("acme")
    assert (status, body["status"]) == (503, "not ready")


def test_the_page_is_self_contained() -> None:
    html = page()
    assert not re.search(r"(src|href)\s*=\s*[\"']?(https?:)?//", html), "no external asset"
    assert "<script>" in html
    assert "<style>" in html
    assert 'fetch("users/" + encodeURIComponent(userId)' in html
    assert "innerHTML" not in html, "the user's data is shown as text, never as markup"
    packaged = Path(__file__).parents[2] / "src" / "triggerstream" / "worker" / "inspector.html"
    assert packaged.read_text() == html


async def test_the_routes_serve_the_page_and_the_view(acme: Any, tmp_path: Path) -> None:
    app = faust.App("inspector-test", web_port=6066, autodiscover=False, datadir=str(tmp_path))
    inspector = Inspector(worker_with("acme", acme.state))  # type: ignore[arg-type]
    add_routes(app, lambda: [0], inspector)
    app.web.init_server()
    server = TestServer(app.web.web_app)  # type: ignore[attr-defined]  # aiohttp's driver
    async with TestClient(server) as client:
        index = await client.get("/")
        assert index.status == 200
        assert "triggerstream inspector" in await index.text()
        assert "default-src 'none'" in index.headers["Content-Security-Policy"]
        found = await client.get("/users/acme")
        assert found.status == 200
        assert found.headers["Cache-Control"] == "no-store"
        assert (await found.json())["user_id"] == "acme"
        missing = await client.get("/users/nobody")
        assert missing.status == 404
        assert (await missing.json())["error"] == "no_state"


async def test_on_a_generated_month_each_view_keeps_replays_emitted_decisions(
    tmp_path: Path,
) -> None:
    """The users of a generated month with the most emitted or held-out decisions: the
    inspector, reading each one's stored state, answers the explain view with exactly
    the decisions replay made that the state keeps (the attribution window before the
    latest of them)."""
    lines = history(20_000, 1_000)
    path = tmp_path / "month.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    everyone = replayed([path])
    sent = {
        user: [d for d in ds if d["outcome"] in ("emitted", "holdout")]
        for user, ds in everyone.items()
    }
    busiest = sorted((u for u in sent if sent[u]), key=lambda u: (-len(sent[u]), u))[:4]
    assert busiest, "the month made no emitted decision"
    window = Engine(load_rules(RULES)).attribution_window
    for user in busiest:
        read = read_user(Engine(load_rules(RULES)), user, [path], partitions=PARTITIONS)
        status, view = await Inspector(worker_with(user, read.state)).user(user)  # type: ignore[arg-type]
        assert status == 200, view
        assert view["user_id"] == user
        assert {r["rule_id"] for r in view["rules"]} == {r.id for r in load_rules(RULES).rules}
        latest = sent[user][-1]["at"]
        expected = [
            d["decision_id"] for d in sent[user] if _seconds(latest) - _seconds(d["at"]) <= window
        ][-32:]
        assert [d["decision_id"] for d in view["decisions"]] == expected, user


def _seconds(text: str) -> float:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
