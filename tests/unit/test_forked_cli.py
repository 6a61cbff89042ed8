"""tests/forked_cli.py: a command run in a child of the forked-CLI server ends as the
same command run as a new `triggerstream` process, for each kind of ending the unit
tests that use it check: output and exit 0, a refused file (one line, exit 2), click's
usage error, invalid settings, a file the system refuses while the command runs (exit
1), stdin read for "-"; and a command whose environment changes what is read at import
runs as a new process. (tests/unit/test_cli.py runs its commands as new processes.)"""

from __future__ import annotations

import os
import re
from pathlib import Path

import orjson

from tests.conftest import free_port, run_cli
from tests.forked_cli import forked_cli
from tests.scenarios import RULES, scenario_events
from triggerstream import compiled

TIMING = re.compile(r"in \d+(\.\d+)?s( \([\d,]+/s\))?")


def offline_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIGGERSTREAM_")}
    env["TRIGGERSTREAM_KAFKA_BOOTSTRAP"] = f"127.0.0.1:{free_port()}"
    env.update(extra)
    return env


def test_a_forked_command_ends_as_the_command_run_as_a_new_process(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"".join(orjson.dumps(event) + b"\n" for event in scenario_events()))
    env = offline_env()
    cases: list[tuple[list[str], bytes | None, dict[str, str]]] = [
        (["rules", "check", str(RULES)], None, env),
        (["replay", "--rules", str(RULES), str(tmp_path / "nope.jsonl")], None, env),
        (["replay", "--rules", str(RULES), str(events), "--triggers", "/dev/full"], None, env),
        (["replay", "--rules", str(RULES), "-"], events.read_bytes() + b"not json\n", env),
        (["no-such-command"], None, env),
        (["topics", "create"], None, offline_env(TRIGGERSTREAM_PROCESSING_GUARANTEE="sometimes")),
    ]
    statuses = set()
    for args, stdin, with_env in cases:
        forked = forked_cli(*args, env=with_env, stdin=stdin)
        new = run_cli(*args, env=with_env, stdin=stdin)
        assert forked.returncode == new.returncode, (args, forked.stderr, new.stderr)
        assert forked.stdout == new.stdout, args
        assert TIMING.sub("", forked.stderr) == TIMING.sub("", new.stderr), args
        assert "Traceback" not in new.stderr, args
        statuses.add(new.returncode)
    assert statuses == {0, 1, 2}


def test_an_environment_read_at_import_runs_a_new_process() -> None:
    """TRIGGERSTREAM_PURE other than the server's: the build a new process names."""
    value = "0" if os.environ.get("TRIGGERSTREAM_PURE") == "1" else "1"
    other = forked_cli("--version", env=offline_env(TRIGGERSTREAM_PURE=value))
    assert other.returncode == 0, other.stderr
    named = compiled.choose(compiled.CORE, compiled.MANIFEST, value)[1]
    assert other.stdout.rstrip().endswith(f", core: {named}"), other.stdout
    server = {k: v for k, v in offline_env().items() if k != "TRIGGERSTREAM_PURE"}
    if "TRIGGERSTREAM_PURE" in os.environ:
        server["TRIGGERSTREAM_PURE"] = os.environ["TRIGGERSTREAM_PURE"]
    assert forked_cli("--version", env=server).stdout != other.stdout
