"""Rules from a topic (docs/contract.md section 17), without a broker: what `rules
publish`, `rules history` and `worker --rules-from-topic` refuse before they talk to
Kafka, the published record, and the version every decision carries."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from pathlib import Path

import orjson
import pytest

from tests.conftest import ROOT
from tests.forked_cli import forked_cli
from triggerstream.rules.load import RulesError, load_rules
from triggerstream.rules_topic import RULES_TOPIC, PublishedRules, parse_published
from triggerstream.topics import load_topics

RULES = ROOT / "examples" / "rules.yaml"
UNREACHABLE = "127.0.0.1:1"
"""A bootstrap address nothing listens on: a command that needs no broker passes."""


def env(**extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("TRIGGERSTREAM_")}
    if "TRIGGERSTREAM_PURE" in os.environ:
        base["TRIGGERSTREAM_PURE"] = os.environ["TRIGGERSTREAM_PURE"]
    return {**base, "TRIGGERSTREAM_REQUEST_TIMEOUT": "2", **extra}


def sha12(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


@pytest.fixture
def broken(tmp_path: Path) -> Path:
    path = tmp_path / "broken.yaml"
    path.write_text(RULES.read_text().replace("cooldown: 3d", "cooldown: 1x", 1))
    return path


def test_check_names_the_version_the_decisions_will_carry() -> None:
    checked = forked_cli("rules", "check", str(RULES), env=env())
    assert checked.returncode == 0, checked.stderr
    assert f"version {sha12(RULES)}" in checked.stdout


def test_publish_refuses_an_invalid_file_as_check_does_and_sends_nothing(broken: Path) -> None:
    checked = forked_cli("rules", "check", str(broken), env=env())
    published = forked_cli("rules", "publish", str(broken), "--bootstrap", UNREACHABLE, env=env())
    assert checked.returncode == published.returncode == 1
    assert published.stdout == checked.stdout
    assert "1x" in published.stdout
    assert published.stderr == checked.stderr  # no broker was asked: nothing about Kafka


def test_publish_refuses_a_missing_file_as_check_does(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.yaml")
    checked = forked_cli("rules", "check", missing, env=env())
    published = forked_cli("rules", "publish", missing, "--bootstrap", UNREACHABLE, env=env())
    assert checked.returncode == published.returncode == 1
    assert published.stdout == checked.stdout
    assert "cannot read the file" in published.stdout


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["rules", "publish"], "missing the argument FILE"),
        (["rules", "check"], "missing the argument FILE"),
        (["rules", "publish", str(RULES), str(RULES)], "unexpected extra argument"),
        (["rules", "history", "extra"], "unexpected extra argument"),
        (["rules", "publish", str(ROOT)], "is a directory"),
    ],
)
def test_argument_errors_exit_2_without_a_traceback(args: list[str], said: str) -> None:
    result = forked_cli(*args, env=env())
    assert result.returncode == 2, result
    assert said in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("command", [["publish", str(RULES)], ["history"]])
def test_an_unreachable_broker_is_one_line_with_the_fix(command: list[str]) -> None:
    result = forked_cli("rules", *command, "--bootstrap", UNREACHABLE, env=env())
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1, result.stderr
    assert "cannot reach Kafka at 127.0.0.1:1" in result.stderr
    assert "--bootstrap" in result.stderr


def test_a_worker_takes_its_rules_from_one_place(tmp_path: Path) -> None:
    both = forked_cli(
        "worker", "--rules", str(RULES), "--rules-from-topic", "--data-dir", str(tmp_path),
        env=env(),
    )  # fmt: skip
    assert both.returncode == 2
    assert "drop --rules" in both.stderr
    neither = forked_cli("worker", "--data-dir", str(tmp_path), env=env())
    assert neither.returncode == 2
    assert "--rules-from-topic" in neither.stderr


def test_the_published_record_carries_the_text_its_version_and_who() -> None:
    text = RULES.read_text()
    at = dt.datetime(2026, 12, 3, 19, 0, tzinfo=dt.UTC)
    published = PublishedRules.of(text, "ana", at)
    record = orjson.loads(published.model_dump_json())
    assert record == {
        "version": sha12(RULES),
        "published_at": "2026-12-03T19:00:00Z",
        "published_by": "ana",
        "text": text,
        "schema_version": 1,
    }
    back, rules = parse_published(published.model_dump_json().encode(), "rules offset 0")
    assert back == published
    assert rules.version == published.version == load_rules(RULES).version


def test_a_record_that_is_not_valid_rules_is_refused_with_its_problems() -> None:
    with pytest.raises(RulesError, match="not a published rules record"):
        parse_published(b"not json", "rules offset 3")
    with pytest.raises(RulesError, match="not a published rules record"):
        parse_published(None, "rules offset 3")
    bad = PublishedRules.of("offers: {}\nrules: []\n", "ana", dt.datetime.now(dt.UTC))
    with pytest.raises(RulesError) as refused:
        parse_published(bad.model_dump_json().encode(), "rules offset 4")
    assert refused.value.file.startswith("rules offset 4 (version ")
    assert refused.value.problems


def test_the_rules_topic_is_compacted_with_one_partition_whatever_partitions_says() -> None:
    (spec,) = [s for s in load_topics() if s.name == RULES_TOPIC]
    assert spec.configs()["cleanup.policy"] == "compact"
    assert spec.partitions_with(None) == spec.partitions_with(12) == 1
    others = [s for s in load_topics() if s.name != RULES_TOPIC]
    assert all(s.partitions_with(12) == 12 for s in others)


def test_replay_stamps_the_hash_of_the_rules_file_on_every_decision(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    generated = forked_cli(
        "generate", "--users", "40", "--days", "3", "--out", str(events), env=env()
    )
    assert generated.returncode == 0, generated.stderr
    decisions = tmp_path / "decisions.jsonl"
    result = forked_cli(
        "replay", "--rules", str(RULES), str(events), "--decisions", str(decisions),
        "--triggers", str(tmp_path / "t.jsonl"), env=env(),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    made = [orjson.loads(line) for line in decisions.read_bytes().splitlines()]
    assert made
    assert {d["rules_version"] for d in made} == {sha12(RULES)}


def test_a_change_of_one_byte_is_a_new_version(tmp_path: Path) -> None:
    copy = tmp_path / "rules.yaml"
    copy.write_text(RULES.read_text() + "\n")
    assert load_rules(copy).version != load_rules(RULES).version
    assert load_rules(copy).version == sha12(copy)
