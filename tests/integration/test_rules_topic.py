"""Rules from a topic on a real broker (docs/contract.md section 17): two workers
started with --rules-from-topic converge on each version published, refuse an invalid
one and keep deciding with the rules they run, and `rules history` lists the versions."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import re
import signal
import time
from collections.abc import Callable
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import run_cli
from tests.engine_support import event, rule, rules_file
from tests.worker_support import (
    WorkerProcess,
    create_topics,
    produce,
    send_raw,
    wait_for_records,
    write_lines,
)
from triggerstream.records import DECISIONS_TOPIC
from triggerstream.rules_topic import RULES_KEY, RULES_TOPIC, PublishedRules
from triggerstream.settings import Settings
from triggerstream.topics import input_partitions, partition_of

EXPORTS = {"event": {"type": "usage.feature_used", "where": {"feature": "export"}}}
SHARES = {"event": {"type": "usage.feature_used", "where": {"feature": "share"}}}


def version_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def refused(worker: WorkerProcess) -> float:
    return sum(
        sample.value
        for family in text_string_to_metric_families(worker.metrics_text())
        for sample in family.samples
        if sample.name == "triggerstream_rules_reloads_total"
        and sample.labels["result"] == "refused"
    )


def wait_until(what: str, done: Callable[[], bool], workers: list[WorkerProcess]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if done():
            return
        time.sleep(0.2)
    logs = "\n".join(w.log()[-3000:] for w in workers)
    raise AssertionError(f"not {what} within 30 s:\n{logs}")


def owned(worker: WorkerProcess) -> set[int]:
    lines = worker.ready_lines()
    found = re.search(r"partitions \[([\d, ]*)\] ready", lines[-1]) if lines else None
    return {int(p) for p in found.group(1).split(",") if p.strip()} if found else set()


def one_user_a_partition(prefix: str) -> list[str]:
    """A user on each input partition, so that every worker decides for some."""
    partitions = input_partitions()
    users: dict[int, str] = {}
    n = 0
    while len(users) < partitions:
        users.setdefault(partition_of(f"{prefix}{n}", partitions), f"{prefix}{n}")
        n += 1
    return sorted(users.values())


def test_two_workers_follow_the_rules_topic_refuse_an_invalid_version_and_history_lists_all(
    settings: Settings, cli_env: dict[str, str], tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    first = tmp_path / "first.yaml"
    first.write_text(rules_file([rule("on-export", EXPORTS, channels=["in_app"])]))
    second = tmp_path / "second.yaml"
    second.write_text(rules_file([rule("on-share", SHARES, channels=["in_app"])]))
    create_topics(cli_env)

    def as_user(name: str) -> dict[str, str]:
        return {**cli_env, "TRIGGERSTREAM_USER": name}

    # Nothing published yet: the worker says so, with the fix, and exits 2.
    waited = run_cli(
        "worker", "--rules-from-topic", "--data-dir", str(tmp_path / "none"),
        env={**cli_env, "TRIGGERSTREAM_RULES_WAIT": "2"},
    )  # fmt: skip
    assert waited.returncode == 2
    last = waited.stderr.strip().splitlines()[-1]
    assert last.startswith("triggerstream: no rules published on "), waited.stderr
    assert "`triggerstream rules publish FILE`" in last
    assert "Traceback" not in waited.stderr

    published = run_cli(
        "rules", "publish", str(first), env={**cli_env, "TRIGGERSTREAM_USER": "ana"}
    )
    assert published.returncode == 0, published.stderr
    assert f"version {version_of(first)}" in published.stdout

    topic_env = {**cli_env, "TRIGGERSTREAM_RULES_FROM_TOPIC": "true"}
    pair = [WorkerProcess(topic_env, None, tmp_path, name) for name in ("w1", "w2")]
    workers += pair
    for worker in pair:
        worker.start()
    every = set(range(input_partitions()))
    wait_until(
        "sharing the partitions",
        lambda: all(owned(w) for w in pair) and owned(pair[0]) | owned(pair[1]) == every
        and not owned(pair[0]) & owned(pair[1]),
        pair,
    )  # fmt: skip
    assert [w.rules_version() for w in pair] == [version_of(first)] * 2

    def use(feature: str, users: list[str], name: str) -> None:
        now = dt.datetime.now(dt.UTC)
        lines = [
            line
            for user in users
            for line in (
                event("usage.session_started", user, now),
                event("usage.feature_used", user, now, feature=feature),
            )
        ]
        produce(cli_env, write_lines(tmp_path / f"{name}.jsonl", lines))

    use("export", ["ann"], "1")
    got = wait_for_records(settings, DECISIONS_TOPIC, 1)
    assert [(d["rule_id"], d["rules_version"]) for d in got] == [("on-export", version_of(first))]

    # A new version: both workers run it within seconds, and decide with it.
    published = run_cli(
        "rules", "publish", str(second), env={**cli_env, "TRIGGERSTREAM_USER": "bob"}
    )
    assert published.returncode == 0, published.stderr
    wait_until(
        "both on the second version",
        lambda: [w.rules_version() for w in pair] == [version_of(second)] * 2,
        pair,
    )
    decided_before = [w.metric("triggerstream_decisions_total") for w in pair]
    sharers = one_user_a_partition("sharer-")
    use("share", sharers, "2")
    use("export", sharers, "3")  # the rule of the first version is gone
    got = wait_for_records(settings, DECISIONS_TOPIC, 1 + len(sharers))
    after = [d for d in got if d["user_id"] in sharers]
    assert sorted(d["user_id"] for d in after) == sharers
    assert {(d["rule_id"], d["rules_version"]) for d in after} == {("on-share", version_of(second))}
    decided = [w.metric("triggerstream_decisions_total") for w in pair]
    assert all(now > before for now, before in zip(decided, decided_before, strict=True))

    # An invalid version (as a newer triggerstream or another tool could write) is
    # refused by both, counted, and the second version keeps deciding.
    broken = PublishedRules.of(
        "rules: [{id: broken, offer: nowhere}]\n", "eve", dt.datetime.now(dt.UTC)
    )
    asyncio.run(send_raw(settings, [(RULES_TOPIC, RULES_KEY, broken.model_dump_json().encode())]))
    wait_until("both refusing it", lambda: all(refused(w) == 1 for w in pair), pair)
    assert [w.rules_version() for w in pair] == [version_of(second)] * 2
    assert all("nowhere" in w.log() or "rules[0].offer" in w.log() for w in pair)
    use("share", ["cat"], "4")
    got = wait_for_records(settings, DECISIONS_TOPIC, 2 + len(sharers))
    (cat,) = [d for d in got if d["user_id"] == "cat"]
    assert (cat["rule_id"], cat["rules_version"]) == ("on-share", version_of(second))

    history = run_cli("rules", "history", env=cli_env)
    assert history.returncode == 0, history.stderr
    lines = history.stdout.splitlines()
    assert len(lines) == 3, history.stdout
    assert [line.split()[0] for line in lines[:2]] == [version_of(first), version_of(second)]
    assert [line.split()[2] for line in lines] == ["ana", "bob", "eve"]
    assert "INVALID" in lines[2]
    assert "compacted" in history.stderr
    assert [w.stop(signal.SIGTERM) for w in pair] == [0, 0]
