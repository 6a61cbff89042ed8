"""The compiled core runs only when it was built from the sources beside it; otherwise,
and when TRIGGERSTREAM_PURE is set, the pure Python core runs, and `--version` says which."""

from __future__ import annotations

import hashlib
import importlib
import importlib.machinery
import json
import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from tests.conftest import ROOT, run_cli
from tests.engine_support import at
from tests.scenarios import RULES, scenario_events
from triggerstream import compiled, traffic

SUFFIX = importlib.machinery.EXTENSION_SUFFIXES[0]


def built_tree(tmp_path: Path, names: tuple[str, ...] = ("engine", "state")) -> Path:
    """A core folder as an install leaves it: sources, compiled files, the build record."""
    core = tmp_path / "core"
    core.mkdir()
    (core / "__init__.py").write_text("")
    for name in names:
        (core / f"{name}.py").write_text(f"NAME = {name!r}\n")
        (core / f"{name}{SUFFIX}").write_bytes(b"")
    record = {
        "compiler": "mypyc 2.4.1",
        "sources": {
            f"{name}.py": hashlib.sha256((core / f"{name}.py").read_bytes()).hexdigest()
            for name in names
        },
    }
    (tmp_path / "core-build.json").write_text(json.dumps(record))
    return core


def choose(tmp_path: Path, pure: str | None = None) -> tuple[bool, str, str | None]:
    return compiled.choose(tmp_path / "core", tmp_path / "core-build.json", pure)


def test_a_fresh_build_runs_compiled(tmp_path: Path) -> None:
    built_tree(tmp_path)
    assert choose(tmp_path) == (True, "compiled (mypyc 2.4.1)", None)
    assert choose(tmp_path, pure="0")[0]


def test_an_edited_source_runs_pure_and_says_how_to_rebuild(tmp_path: Path) -> None:
    core = built_tree(tmp_path)
    (core / "state.py").write_text("NAME = 'state, edited after the build'\n")
    is_compiled, build, warning = choose(tmp_path)
    assert not is_compiled
    assert build == "pure Python (compiled core is stale)"
    assert warning is not None
    assert "\n" not in warning
    assert "core/state.py" in warning
    assert "pip install -e '.[dev]'" in warning


@pytest.mark.parametrize("change", ["a module added", "a module removed", "a compiled file gone"])
def test_a_core_that_is_not_the_one_built_runs_pure(tmp_path: Path, change: str) -> None:
    core = built_tree(tmp_path)
    if change == "a module added":
        (core / "windows.py").write_text("")
    elif change == "a module removed":
        (core / "engine.py").unlink()
        (core / f"engine{SUFFIX}").unlink()
    else:
        (core / f"engine{SUFFIX}").unlink()
    is_compiled, _, warning = choose(tmp_path)
    assert not is_compiled
    assert warning is not None


def test_pure_on_request_or_without_a_build(tmp_path: Path) -> None:
    built_tree(tmp_path)
    assert choose(tmp_path, pure="1") == (False, "pure Python (TRIGGERSTREAM_PURE is set)", None)
    (tmp_path / "core-build.json").unlink()
    assert choose(tmp_path) == (False, "pure Python (no compiled build)", None)
    (tmp_path / "core-build.json").write_text("{not json")
    assert not choose(tmp_path)[0]


def test_the_build_named_is_the_build_that_runs() -> None:
    """In this process: every module of the core is an extension module exactly when
    the compiled core was chosen (CI runs the tests once each way)."""
    names = [p.stem for p in compiled.core_sources(compiled.CORE)]
    assert "engine" in names
    for name in names:
        module = importlib.import_module(f"triggerstream.core.{name}")
        loaded_compiled = isinstance(module.__loader__, importlib.machinery.ExtensionFileLoader)
        assert loaded_compiled == compiled.COMPILED, (name, module.__file__, compiled.BUILD)
    shown = run_cli("--version", env=dict(os.environ))
    assert shown.returncode == 0
    assert f"core: {compiled.BUILD}" in shown.stdout


def test_triggerstream_pure_loads_every_core_module_from_its_source() -> None:
    program = (
        "import importlib, triggerstream.compiled as c\n"
        "for p in c.core_sources(c.CORE):\n"
        "    print(importlib.import_module('triggerstream.core.' + p.stem).__file__)\n"
    )
    env = {**os.environ, "TRIGGERSTREAM_PURE": "1"}
    shown = subprocess.run(
        [sys.executable, "-c", program], env=env, capture_output=True, text=True, check=True
    )
    files = shown.stdout.split()
    assert len(files) == len(compiled.core_sources(compiled.CORE))
    assert all(f.endswith(".py") for f in files), files
    assert "core: pure Python (TRIGGERSTREAM_PURE is set)" in run_cli("--version", env=env).stdout


REPLAY = """
import hashlib, io, sys
import orjson
from pathlib import Path
from triggerstream import compiled
from triggerstream.core.engine import Engine
from triggerstream.replay import Outputs, Replay, line_writer, read_lines
from triggerstream.rules.load import load_rules

rules, events, until = Path(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3])
sinks = {n: io.BytesIO() for n in ("triggers", "decisions", "attributions", "dead_letters")}
outputs = Outputs(**{name: line_writer(sink) for name, sink in sinks.items()})
replay = Replay(Engine(load_rules(rules)), outputs, now=until)
replay.feed(read_lines([events]))
replay.finish(until)
print(compiled.BUILD)
for name, sink in sinks.items():
    print(name, sink.getvalue().count(b"\\n"), hashlib.sha256(sink.getvalue()).hexdigest())
states = hashlib.sha256()
for user in sorted(replay.states):
    states.update(user.encode() + b"\\0" + orjson.dumps(replay.states[user].to_document()) + b"\\0")
print("states", len(replay.states), states.hexdigest())
"""


@pytest.mark.parametrize("events", ["the design scenarios", "a generated month"])
def test_the_compiled_and_the_pure_core_decide_alike(tmp_path: Path, events: str) -> None:
    """Every record and every user's stored state, byte for byte, from the build this
    environment has and from the pure Python core (both pure where nothing was compiled)."""
    path = tmp_path / "events.jsonl"
    if events == "the design scenarios":
        lines = [orjson.dumps(line) for line in scenario_events()]
        until = at(days=40).timestamp()
    else:
        lines = traffic.history(events=20_000, users=2_000)
        until = traffic.START.timestamp() + 31 * 86400
    path.write_bytes(b"\n".join(lines) + b"\n")

    def replay(pure: bool) -> list[str]:
        env = {k: v for k, v in os.environ.items() if k != compiled.PURE_ENV}
        if pure:
            env[compiled.PURE_ENV] = "1"
        shown = subprocess.run(
            [sys.executable, "-c", REPLAY, str(RULES), str(path), str(until)],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
        return shown.stdout.splitlines()

    pure, built = replay(pure=True), replay(pure=False)
    assert pure[0].startswith("pure Python")
    assert built[0] == compiled.BUILD or not compiled.COMPILED
    assert pure[1:] == built[1:]
    counted = dict(line.split()[:2] for line in pure[1:])
    assert int(counted["decisions"]) > 0
    assert int(counted["states"]) > 0
