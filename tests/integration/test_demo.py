"""`triggerstream demo`, as a newcomer runs it, and `triggerstream loadgen`."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import orjson
import pytest

from tests.conftest import TRIGGERSTREAM, free_port, run_cli
from tests.scenarios import RULES
from tests.worker_support import create_topics, read_topic
from triggerstream.demo import packaged_rules
from triggerstream.events import INPUT_TOPICS
from triggerstream.ports import port_is_free
from triggerstream.records import REASON_WORDS
from triggerstream.rules.load import load_rules
from triggerstream.settings import Settings

SUMMARY = re.compile(
    r"ready in (?P<ready>[\d.]+) s .*first trigger (?P<first>[\d.]+) s after start .*; "
    r"(?P<triggers>[\d,]+) triggers, (?P<suppressed>[\d,]+) suppressed, .*; "
    r"(?P<deferred>[\d,]+) deferred: (?P<released>[\d,]+) released",
    re.S,
)


def summary(output: str) -> dict[str, float]:
    found = SUMMARY.search(" ".join(output.split()))
    assert found, f"no summary in the demo's output:\n{output}"
    return {key: float(value.replace(",", "")) for key, value in found.groupdict().items()}


def kept_log(output: str) -> Path:
    """The worker's log, as the view shows it and the last line says it stays."""
    shown = re.search(r"worker log (\S+)", output)
    stays = re.search(r"the worker's log stays in (\S+)", output)
    assert shown, output
    assert stays, output
    assert shown.group(1) == stays.group(1)
    return Path(stays.group(1))


def last_triggers(output: str) -> list[list[str]]:
    """The rows of the view's "last triggers" table: at, user, rule, channel, offer, why."""
    rows = [[cell.strip() for cell in line.split("│")[1:-1]] for line in output.splitlines()]
    return [row for row in rows if len(row) == 6 and re.fullmatch(r"\d\d:\d\d:\d\d", row[0])]


@pytest.mark.own_broker
def test_the_demo_shows_triggers_within_30_seconds_and_cleans_up_after_itself() -> None:
    web_port = free_port()
    began = time.monotonic()
    result = subprocess.run(
        [TRIGGERSTREAM, "demo", "--duration", "20", "--users", "2000", "--web-port", str(web_port)],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
        env={**os.environ, "COLUMNS": "200"},  # a terminal wide enough for whole rows
    )
    took = time.monotonic() - began
    assert result.returncode == 0, result.stdout + result.stderr
    figures = summary(result.stdout)
    assert figures["first"] < 30, result.stdout
    assert figures["triggers"] > 20
    assert figures["suppressed"] > 0
    # Offers deferred (storage offers while a ticket about the full storage is open)
    # and released once the user can take them, with the figures on the way.
    assert figures["released"] >= 1, result.stdout
    assert re.search(r"released [\d,]+ · waiting [\d,]+ · expired [\d,]+", result.stdout)
    # The view showed what a newcomer is told to look for.
    for heading in ("triggers by rule and channel", "suppressed, by reason", "last triggers"):
        assert heading in result.stdout
    assert f"http://127.0.0.1:{web_port}/metrics" in result.stdout
    assert "free-skip-limit" in result.stdout
    # Each trigger with its offer's title, as the rules file names it.
    rules = load_rules(packaged_rules())
    titles = {rule.id: rules.offers[rule.offer].title for rule in rules.rules}
    shown = last_triggers(result.stdout)
    assert shown, result.stdout
    assert all(offer == titles[rule] for _, _, rule, _, offer, _ in shown), shown
    # Each reason in the table, in words; the rules as loaded; where the inspector is.
    reasons = [code for code in REASON_WORDS if re.search(rf"│ {code} +│", result.stdout)]
    assert reasons, result.stdout
    for code in reasons:
        words = re.escape(REASON_WORDS[code])
        assert re.search(rf"^{code} +{words}", result.stdout, re.M), code
    assert "rules: loaded at start" in result.stdout
    assert f"inspector http://127.0.0.1:{web_port}/ " in result.stdout
    # Stopped in order: ports free again, its temporary directory gone (its worker's
    # log kept next to where it was, as the view said), quickly.
    assert port_is_free(web_port)
    log = kept_log(result.stdout)
    try:
        assert "ready:" in log.read_text()
        assert not log.with_name(log.name.removesuffix("-worker.log")).exists()
    finally:
        log.unlink()
    assert took < 120, f"the demo took {took:.0f} s for 20 s of traffic"
    assert "Traceback" not in result.stdout + result.stderr


@pytest.mark.own_broker
def test_ctrl_c_stops_the_demo_cleanly_with_a_summary(tmp_path: Path) -> None:
    web_port = free_port()
    broker_port = free_port()
    output = tmp_path / "demo.out"
    rules = tmp_path / "rules.yaml"
    shutil.copy(packaged_rules(), rules)
    with output.open("wb") as out:
        demo = subprocess.Popen(
            [
                TRIGGERSTREAM,
                "demo",
                "--users",
                "500",
                "--port",
                str(broker_port),
                "--web-port",
                str(web_port),
                "--keep",
                str(tmp_path / "kept"),
                "--rules",
                str(rules),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "COLUMNS": "200"},
        )
    try:
        deadline = time.monotonic() + 120
        while b"worker ready" not in output.read_bytes():
            assert demo.poll() is None, output.read_text()
            assert time.monotonic() < deadline, output.read_text()
            time.sleep(0.2)
        # The worker's metrics are where the demo says, and moving.
        time.sleep(8)
        with urllib.request.urlopen(f"http://127.0.0.1:{web_port}/metrics", timeout=5) as page:
            assert b"triggerstream_events_total{" in page.read()
        rules.write_text("rules: [{id: broken, offer: nowhere}]\n")  # refused, and shown
        time.sleep(4)
        demo.send_signal(signal.SIGINT)
        assert demo.wait(90) == 0, output.read_text()
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
    text = output.read_text()
    assert summary(text)["triggers"] > 0
    assert "rules: a change refused at " in text
    assert "the running rules stay: rules.yaml:1:1: offers: required" in text
    assert kept_log(text) == tmp_path / "kept" / "worker.log"
    assert port_is_free(web_port)
    assert port_is_free(broker_port)
    # --keep kept the logs: the worker stopped cleanly, committing on its way out.
    log = (tmp_path / "kept" / "worker.log").read_text()
    assert "Traceback" not in log
    assert "Traceback" not in text


def test_loadgen_produces_valid_traffic_at_the_rate_asked(
    settings: Settings, cli_env: dict[str, str], tmp_path: Path
) -> None:
    create_topics(cli_env)
    result = run_cli(
        "loadgen", "--rate", "200", "--duration", "10", "--users", "300", "--seed", "5", env=cli_env
    )
    assert result.returncode == 0, result.stderr
    lines = [
        orjson.dumps({"topic": topic, **event})
        for topic in INPUT_TOPICS
        if topic != "offer-feedback"  # nobody answers offers without --react
        for event in read_topic(settings, topic)
    ]
    assert 1800 <= len(lines) <= 2300, f"{len(lines)} events for 200/s over 10 s"
    assert "events in" in result.stderr
    # Every event is one the worker accepts.
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join(lines) + b"\n")
    replayed = run_cli(
        "replay", "--rules", str(RULES), str(events), "--triggers", "/dev/null", env=cli_env
    )
    assert replayed.returncode == 0, replayed.stderr
    assert f"{len(lines)} event(s), 0 invalid, 0 duplicate(s)" in replayed.stderr


@pytest.mark.own_broker
def test_a_second_demo_in_the_same_keep_folder_replaces_the_earlier_state(
    tmp_path: Path,
) -> None:
    """The embedded broker starts empty every time: the first run's RocksDB state was
    ahead of every changelog, and the second run's worker stopped (issue 19)."""
    kept = tmp_path / "kept"
    outputs = []
    for _ in range(2):
        result = subprocess.run(
            [
                TRIGGERSTREAM, "demo", "--duration", "5", "--users", "300",
                "--web-port", str(free_port()), "--keep", str(kept),
            ],
            capture_output=True, text=True, timeout=240, check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr
        summary(result.stdout)
        outputs.append(result.stdout)
    first, second = (" ".join(output.split()) for output in outputs)
    replaced = f"replaced the RocksDB state of an earlier demo in {kept / 'data'}"
    assert replaced not in first
    assert replaced in second
    assert "Traceback" not in (kept / "worker.log").read_text()


def worker_of(parent: int) -> int:
    """The pid of the `triggerstream worker` process a demo started."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == parent and b"\0worker" in command:
            return int(entry.name)
    raise AssertionError(f"no worker process under {parent}")


@pytest.mark.own_broker
def test_a_failing_demo_says_why_in_one_line_and_keeps_the_log_it_points_to(
    tmp_path: Path,
) -> None:
    output = tmp_path / "demo.out"
    errors = tmp_path / "demo.err"
    with output.open("wb") as out, errors.open("wb") as err:
        demo = subprocess.Popen(
            [TRIGGERSTREAM, "demo", "--users", "300", "--web-port", str(free_port())],
            stdout=out,
            stderr=err,
        )
    try:
        deadline = time.monotonic() + 120
        while b"worker ready" not in output.read_bytes():
            assert demo.poll() is None, output.read_text() + errors.read_text()
            assert time.monotonic() < deadline, output.read_text()
            time.sleep(0.2)
        os.kill(worker_of(demo.pid), signal.SIGKILL)  # as the kernel's OOM killer would
        assert demo.wait(90) == 1
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
    stderr = errors.read_text()
    assert "Traceback" not in stderr + output.read_text()
    (line,) = stderr.strip().splitlines()
    stopped = "triggerstream: the worker stopped: killed by SIGKILL; full log: "
    found = re.fullmatch(re.escape(stopped) + r"(\S+)", line)
    assert found, line
    log = Path(found.group(1))
    try:
        assert log.is_file(), "the log the message points to was removed"
        assert "ready:" in log.read_text()
        assert not log.with_name(log.name.removesuffix("-worker.log")).exists()
    finally:
        log.unlink()
