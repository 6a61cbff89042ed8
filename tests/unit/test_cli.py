"""The command line without a broker: clear one-line errors and exit statuses."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson

from tests.conftest import free_port, run_cli
from tests.forked_cli import forked_cli
from tests.scenarios import RULES, scenario_events


def offline_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIGGERSTREAM_")}
    env["TRIGGERSTREAM_KAFKA_BOOTSTRAP"] = f"127.0.0.1:{free_port()}"
    env.update(extra)
    return env


def test_an_unreachable_broker_is_one_line_with_the_address_and_exit_2() -> None:
    env = offline_env()
    for args in (["topics", "create"], ["tail", "usage-events", "--timeout", "1"]):
        result = run_cli(*args, env=env)
        assert result.returncode == 2
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert env["TRIGGERSTREAM_KAFKA_BOOTSTRAP"] in lines[0]
        assert "cannot reach Kafka" in lines[0]
        assert "TRIGGERSTREAM_KAFKA_BOOTSTRAP" in lines[0]


def test_produce_to_an_unreachable_broker_fails_after_validating(tmp_path: Path) -> None:
    path = tmp_path / "ok.jsonl"
    path.write_text(
        '{"topic": "usage-events", "event_id": "e", "user_id": "u", "type": "session_ended",'
        ' "occurred_at": "2026-11-02T09:00:00Z"}\n'
    )
    result = run_cli("produce", str(path), env=offline_env())
    assert result.returncode == 2
    assert "cannot reach Kafka" in result.stderr
    assert "Traceback" not in result.stderr


def test_invalid_settings_name_the_variable_and_exit_2() -> None:
    result = run_cli(
        "topics", "create", env=offline_env(TRIGGERSTREAM_PROCESSING_GUARANTEE="sometimes")
    )
    assert result.returncode == 2
    assert "TRIGGERSTREAM_PROCESSING_GUARANTEE" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_missing_file_is_a_usage_error() -> None:
    result = run_cli("produce", "/nonexistent/events.jsonl", env=offline_env())
    assert result.returncode == 2
    assert "does not exist" in result.stderr.lower() or "no such file" in result.stderr.lower()


def test_the_broker_help_says_it_keeps_data_in_memory_only() -> None:
    result = forked_cli("broker", "--help", env=offline_env())
    assert result.returncode == 0
    assert "IN MEMORY ONLY" in result.stdout


def test_replay_reads_stdin_for_a_dash_as_produce_does(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in scenario_events()))
    from_file = run_cli("replay", "--rules", str(RULES), str(events), env=offline_env())
    assert from_file.returncode == 0, from_file.stderr
    assert from_file.stdout.count("\n") > 5

    piped = run_cli(
        "replay", "--rules", str(RULES), "-", "--dlq", str(tmp_path / "dlq.jsonl"),
        env=offline_env(), stdin=events.read_bytes() + b"not json\n",
    )  # fmt: skip
    assert piped.returncode == 0, piped.stderr
    assert piped.stdout == from_file.stdout  # byte for byte the same triggers
    assert "1 invalid" in piped.stderr
    (dead,) = map(orjson.loads, (tmp_path / "dlq.jsonl").read_bytes().splitlines())
    assert (dead["file"], dead["reason_code"]) == ("stdin", "not_json")

    twice = run_cli("replay", "--rules", str(RULES), "-", "-", env=offline_env(), stdin=b"")
    assert twice.returncode == 2
    assert twice.stderr.startswith("triggerstream: stdin ('-') can be read once")


def test_python_m_triggerstream_cli_has_every_command_the_triggerstream_command_has() -> None:
    # Its __main__ guard once stood before demo and loadgen were defined:
    # `python -m triggerstream.cli demo` then said "No such command".
    for command in (["demo"], ["loadgen"], []):
        result = subprocess.run(
            [sys.executable, "-m", "triggerstream.cli", *command, "--help"],
            env=offline_env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        shown = forked_cli(*command, "--help", env=offline_env()).stdout  # the same as run_cli
        assert result.stdout == shown.replace(
            "Usage: triggerstream", "Usage: python -m triggerstream.cli"
        )
