"""`triggerstream broker`: the embedded broker a developer starts by hand."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import TRIGGERSTREAM, free_port, run_cli


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_broker_command_serves_a_round_trip_and_stops_on_a_signal(
    tmp_path: Path, stop_signal: signal.Signals
) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIGGERSTREAM_")}
    env["TRIGGERSTREAM_KAFKA_BOOTSTRAP"] = f"127.0.0.1:{port}"
    broker = subprocess.Popen(
        [TRIGGERSTREAM, "broker", "--port", str(port)],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert broker.stderr is not None
        ready = broker.stderr.readline()
        assert f"ready on 127.0.0.1:{port}" in ready
        assert "in memory only" in ready

        busy = run_cli("broker", "--port", str(port), env=env)
        assert busy.returncode == 2
        assert f"port {port} on 127.0.0.1 is in use" in busy.stderr

        assert run_cli("topics", "create", "--partitions", "1", env=env).returncode == 0
        events = tmp_path / "one.jsonl"
        events.write_text(
            '{"topic": "usage-events", "event_id": "e-1", "user_id": "u-1",'
            ' "type": "feature_used", "occurred_at": "2026-11-02T09:00:00Z",'
            ' "properties": {"feature": "skip"}}\n'
        )
        assert run_cli("produce", str(events), env=env).returncode == 0
        tailed = run_cli(
            "tail",
            "usage-events",
            "--from-beginning",
            "--max-records",
            "1",
            "--timeout",
            "5",
            env=env,
        )
        assert '"event_id":"e-1"' in tailed.stdout
    finally:
        broker.send_signal(stop_signal)
        status = broker.wait(timeout=15)
    assert status == 0
    assert "stopped" in (broker.stderr.read() if broker.stderr else "")
    began = time.monotonic()
    gone = run_cli("topics", "create", "--partitions", "1", env=env)
    assert gone.returncode == 2, "the broker still answers after being stopped"
    assert time.monotonic() - began < 30
