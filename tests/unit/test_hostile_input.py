"""Hostile rules files: they are refused with a reason, never run code, read files or
hang the worker. (Hostile events: tests/unit/test_events.py fuzzes the event models;
tests/reliability/test_poison_at_scale.py sends every kind of bad event through a worker.)"""

from __future__ import annotations

import ast
import threading
import time
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import ROOT
from tests.scenarios import RULES
from triggerstream.rules.load import MAX_VALUES, RulesError, parse_rules
from triggerstream.rules.model import RulesFile

SOURCE = ROOT / "src" / "triggerstream"

# JSON-like values, as YAML may hold them.
VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def parsed_or_refused(text: str) -> RulesFile | RulesError:
    """What the loader makes of a text: rules, or the one error type it raises."""
    try:
        return parse_rules(text)
    except RulesError as error:
        refusal = error
    assert refusal.problems, "a refusal without a reason"
    assert all(problem.message for problem in refusal.problems)
    return refusal


def paths(node: Any, here: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in a document (a key or index path)."""
    found = [here]
    if isinstance(node, dict):
        for key, value in node.items():
            found += paths(value, (*here, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += paths(value, (*here, index))
    return found


def replaced(document: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    head, *rest = path
    copy: Any = dict(document) if isinstance(document, dict) else list(document)
    copy[head] = replaced(document[head], tuple(rest), value)
    return copy


EXAMPLE = yaml.safe_load(RULES.read_text())
PLACES = paths(EXAMPLE)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(PLACES), VALUES)
def test_any_part_of_a_rules_file_replaced_by_any_value_is_loaded_or_refused(
    place: tuple[Any, ...], value: Any
) -> None:
    text = yaml.safe_dump(replaced(EXAMPLE, place, value), allow_unicode=True)
    parsed_or_refused(text)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400))
def test_any_text_as_a_rules_file_is_loaded_or_refused(text: str) -> None:
    parsed_or_refused(text)


def test_a_rules_file_cannot_run_code_or_read_files(tmp_path: Path) -> None:
    touched = tmp_path / "touched"
    secret = tmp_path / "secret.txt"
    secret.write_text("hunter2")
    attempts = [
        f'rules: !!python/object/apply:os.system ["touch {touched}"]',
        f'rules: !!python/object/new:subprocess.Popen [["touch", "{touched}"]]',
        "rules: !!python/name:os.system",
        "rules: !!python/module:os",
        f"rules: !include {secret}",
        f"rules: !!binary {secret}",
    ]
    for text in attempts:
        refusal = parsed_or_refused(text)
        assert isinstance(refusal, RulesError), text
        assert "hunter2" not in str(refusal)
    assert not touched.exists()


def test_an_alias_bomb_is_refused_at_once() -> None:
    """A few lines of anchors and aliases that stand for a billion values (before the
    limit, the loader walked them for minutes)."""
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
    text = "\n".join([*lines, "rules: *a8"])
    outcome: list[Any] = []
    began = time.monotonic()
    loader = threading.Thread(target=lambda: outcome.append(parsed_or_refused(text)), daemon=True)
    loader.start()
    loader.join(timeout=10)
    assert outcome, "the loader was still busy after 10 s"
    assert isinstance(outcome[0], RulesError)
    assert f"more than {MAX_VALUES:,} values" in str(outcome[0])
    assert time.monotonic() - began < 10


def test_a_rules_file_nested_too_deeply_is_refused() -> None:
    for text in ["[" * 20_000, "a: " + "{b: " * 5_000 + "1" + "}" * 5_000]:
        refusal = parsed_or_refused(text)
        assert isinstance(refusal, RulesError)
        assert "nested too deeply" in str(refusal)


# What input (an event, a rules file) reaches, it must not be able to turn into code,
# a file read or a connection. A call to any of these in those modules is a finding.
FORBIDDEN = {
    "eval",
    "exec",
    "compile",
    "__import__",
    "open",
    "load",  # yaml.load, pickle.load, marshal.load
    "loads",  # pickle.loads (orjson.loads is allowed below)
    "unsafe_load",
    "full_load",
    "system",
    "popen",
    "Popen",
    "run",
    "urlopen",
    "create_connection",
    "import_module",
}
ALLOWED = {("orjson", "loads"), ("json", "loads"), ("asyncio", "run")}
INPUT_MODULES = [
    *(SOURCE / "events").glob("*.py"),
    *(SOURCE / "core").glob("*.py"),
    *(SOURCE / "rules").glob("*.py"),
]


def test_the_code_that_reads_events_and_rules_cannot_run_code_read_files_or_connect() -> None:
    found = []
    for path in INPUT_MODULES:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [alias.name for alias in node.names]
                module = getattr(node, "module", None) or ""
                for name in [module, *names]:
                    if name.split(".")[0] in {
                        "pickle",
                        "marshal",
                        "subprocess",
                        "socket",
                        "urllib",
                        "shelve",
                    }:
                        found.append(f"{path.name}:{node.lineno} imports {name}")
            if not isinstance(node, ast.Call):
                continue
            function = node.func
            if isinstance(function, ast.Name):
                owner, name = "", function.id
            elif isinstance(function, ast.Attribute):
                owner = function.value.id if isinstance(function.value, ast.Name) else ""
                name = function.attr
            else:
                continue
            if name in FORBIDDEN and (owner, name) not in ALLOWED:
                found.append(
                    f"{path.name}:{node.lineno} calls {owner + '.' if owner else ''}{name}"
                )
    assert len(INPUT_MODULES) > 10
    assert found == []
