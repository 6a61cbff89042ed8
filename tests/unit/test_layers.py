"""The packages depend one way (issue 21): the core uses the rules, never the reverse.

A rules module that imported the core would make a cycle: a rules file could then not be
loaded or checked without the engine."""

from __future__ import annotations

import ast

import pytest

from tests.conftest import ROOT

RULES = ROOT / "src" / "triggerstream" / "rules"


def imported(source: str, package: str) -> set[str]:
    """Every module a module of ``package`` imports, anywhere in its ``source`` (inside
    functions too), relative imports made absolute."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            module = ".".join(part for part in (base, node.module) if part)
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def the_core(names: set[str]) -> list[str]:
    return sorted(
        n for n in names if n == "triggerstream.core" or n.startswith("triggerstream.core.")
    )


def test_no_module_of_the_rules_imports_the_core() -> None:
    modules = sorted(RULES.rglob("*.py"))
    assert len(modules) >= 3, RULES
    upward = {}
    for path in modules:
        package = ".".join(("triggerstream", *path.relative_to(RULES.parent).parent.parts))
        found = the_core(imported(path.read_text(), package))
        if found:
            upward[str(path.relative_to(ROOT))] = found
    assert upward == {}, "the rules must not import the core (the core imports the rules)"


@pytest.mark.parametrize(
    "line",
    [
        "from triggerstream.core.state import UserState",
        "import triggerstream.core.engine",
        "from triggerstream import core",
        "from ..core import state",
        "from .. import core",
        "def f():\n    from triggerstream.core import engine",
    ],
)
def test_the_check_sees_every_way_of_importing_the_core(line: str) -> None:
    assert the_core(imported(line, "triggerstream.rules")), line


def test_the_check_lets_the_rules_import_their_own_and_the_events() -> None:
    source = "from .model import Rule\nfrom triggerstream.events import EVENT_TYPES\n"
    assert the_core(imported(source, "triggerstream.rules")) == []
