"""Bad paths and files given to the command line, as a newcomer gives them: one line on
stderr (`triggerstream: what and where`), the documented exit status, no traceback, and
nothing written or started (issue 19)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import orjson

from tests.conftest import ROOT, free_port
from tests.forked_cli import forked_cli
from tests.scenarios import RULES, scenario_events

EVENTS = ROOT / "topics" / "examples" / "usage-events.jsonl"
LATIN1_RULES = (
    b'offers:\n  premium: {kind: upsell, product: premium, title: "Caf\xe9 Premium"}\n'
    b"rules:\n  - {id: r1, offer: premium, trigger: {event: {type: usage.session_started}}}\n"
)


def offline_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIGGERSTREAM_")}
    env["TRIGGERSTREAM_KAFKA_BOOTSTRAP"] = f"127.0.0.1:{free_port()}"
    return env


def one_line(stderr: str) -> str:
    """The one line a refused command prints; fails on more, or on a traceback."""
    assert "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("triggerstream: "), stderr
    return lines[0]


def test_a_rules_file_that_is_not_utf8_is_a_problem_for_rules_check_and_one_line_for_replay(
    tmp_path: Path,
) -> None:
    rules = tmp_path / "latin1.yaml"
    rules.write_bytes(LATIN1_RULES)

    checked = forked_cli("rules", "check", str(rules), env=offline_env())
    assert checked.returncode == 1  # like every other problem of a rules file
    assert "Traceback" not in checked.stdout + checked.stderr
    assert checked.stdout.strip() == (
        f"{rules}:2:56: not UTF-8 text: byte(s) e9 at line 2, column 56; save the file as UTF-8"
    )
    assert f"1 problem(s) in {rules}" in checked.stderr

    replayed = forked_cli("replay", "--rules", str(rules), str(EVENTS), env=offline_env())
    assert replayed.returncode == 2
    line = one_line(replayed.stderr)
    assert f"{rules}:2:56: not UTF-8 text" in line
    assert "triggerstream rules check" in line
    assert replayed.stdout == ""

    worker = forked_cli("worker", "--rules", str(rules), env=offline_env())
    assert worker.returncode == 2
    assert "not UTF-8 text" in one_line(worker.stderr)


def test_replay_refused_for_its_rules_leaves_the_output_files_as_they_were(
    tmp_path: Path,
) -> None:
    rules = tmp_path / "latin1.yaml"
    rules.write_bytes(LATIN1_RULES)
    decisions = tmp_path / "decisions.jsonl"
    decisions.write_text("yesterday's decisions\n")
    result = forked_cli(
        "replay", "--rules", str(rules), str(EVENTS), "--decisions", str(decisions),
        "--dlq", str(tmp_path / "dlq.jsonl"), env=offline_env(),
    )  # fmt: skip
    assert result.returncode == 2
    one_line(result.stderr)
    assert decisions.read_text() == "yesterday's decisions\n"
    assert not (tmp_path / "dlq.jsonl").exists()


def bad_paths(tmp: Path) -> list[tuple[list[str], str]]:
    """(arguments, what the one line must say) for every kind of bad path."""
    a_file = tmp / "a-file.txt"
    missing = tmp / "missing" / "out"
    rules, events = str(RULES), str(EVENTS)
    return [
        # inputs that are missing or folders
        (["produce", str(tmp / "nope.jsonl")], "nope.jsonl"),
        (["produce", str(tmp)], "Is a directory"),
        (["replay", "--rules", rules, str(tmp / "nope.jsonl")], "does not exist"),
        (["replay", "--rules", str(tmp), events], "--rules: File"),
        (["rules", "check", str(tmp)], "is a directory"),
        (["report", "--decisions", str(tmp / "nope.jsonl")], "does not exist"),
        (["demo", "--rules", str(tmp / "nope.yaml")], "does not exist"),
        # outputs into a folder that is missing, or that is a file, or onto a folder
        (["replay", "--rules", rules, events, "--decisions", f"{missing}.jsonl"], "does not exist"),
        (["replay", "--rules", rules, events, "--dlq", f"{a_file}/dlq.jsonl"], "is not a folder"),
        (["replay", "--rules", rules, events, "--triggers", str(tmp)], "is a directory"),
        (["report", "--decisions", events, "--plot", f"{missing}.png"], "does not exist"),
        (["report", "--decisions", events, "--output", f"{missing}.txt"], "does not exist"),
        (["demo", "--screenshot", f"{missing}.svg"], "--screenshot"),
        (["demo", "--keep", f"{a_file}/kept"], "--keep"),
        (["demo", "--keep", str(a_file)], "is a file"),
        (["worker", "--rules", rules, "--data-dir", f"{a_file}/data"], "data dir"),
    ]


def test_every_kind_of_bad_path_is_one_line_and_exit_2(tmp_path: Path) -> None:
    (tmp_path / "a-file.txt").write_text("a file, not a folder\n")
    for args, says in bad_paths(tmp_path):
        began = time.monotonic()
        result = forked_cli(*args, env=offline_env())
        assert result.returncode == 2, (args, result.stderr)
        line = one_line(result.stderr)
        assert says.lower() in line.lower(), (args, line)
        assert result.stdout == "", (args, result.stdout)
        # Refused before anything ran: no broker was started, no record read.
        assert time.monotonic() - began < 15, args
    assert not (tmp_path / "missing").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file.txt"]


def test_the_demo_checks_where_its_screenshot_goes_before_it_starts(tmp_path: Path) -> None:
    began = time.monotonic()
    result = forked_cli(
        "demo", "--duration", "5", "--web-port", str(free_port()),
        "--screenshot", str(tmp_path / "shots" / "demo.svg"), env=offline_env(),
    )  # fmt: skip
    assert result.returncode == 2
    line = one_line(result.stderr)
    assert f"--screenshot {tmp_path / 'shots' / 'demo.svg'}" in line
    assert f"the folder {tmp_path / 'shots'} does not exist" in line
    assert "broker up" not in result.stdout
    assert time.monotonic() - began < 10  # the demo itself (5 s of traffic) never ran


def test_tls_files_that_cannot_be_used_are_one_line_naming_the_setting(tmp_path: Path) -> None:
    not_a_certificate = tmp_path / "ca.pem"
    not_a_certificate.write_text("not a certificate\n")
    for value, says in (
        (str(tmp_path / "nope.pem"), f"TRIGGERSTREAM_SSL_CAFILE={tmp_path / 'nope.pem'}: no such"),
        (str(tmp_path), f"TRIGGERSTREAM_SSL_CAFILE={tmp_path}: is a folder"),
        (str(not_a_certificate), "the TLS files (TRIGGERSTREAM_SSL_CAFILE, "),
    ):
        env = offline_env()
        env.update(TRIGGERSTREAM_SECURITY_PROTOCOL="SSL", TRIGGERSTREAM_SSL_CAFILE=value)
        for args in (["topics", "create"], ["worker", "--rules", str(RULES)]):
            result = forked_cli(*args, env=env)
            assert result.returncode == 2, (args, result.stderr)
            line = one_line(result.stderr)
            assert line.startswith(f"triggerstream: invalid settings: {says}"), line


def test_an_output_the_system_refuses_while_replay_runs_is_one_line_and_exit_1(
    tmp_path: Path,
) -> None:
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"".join(orjson.dumps(event) + b"\n" for event in scenario_events()))
    # /dev/full: every write fails with ENOSPC, as on a full disk.
    for args in (["--triggers", "/dev/full"], ["--decisions", "/dev/full"]):
        result = forked_cli("replay", "--rules", str(RULES), str(events), *args, env=offline_env())
        assert result.returncode == 1, result.stderr
        assert one_line(result.stderr) == "triggerstream: /dev/full: No space left on device"
