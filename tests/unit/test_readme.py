"""The README states what is true of the command line a user runs (issue 19): every
option of every command, every reason code an event can be refused with, every folder
of tests."""

from __future__ import annotations

import os
import re
from functools import cache

from click.testing import CliRunner

from tests.conftest import ROOT
from triggerstream.cli import main

README = (ROOT / "README.md").read_text()


@cache
def help_of(*command: str) -> str:
    """`triggerstream ... --help` as a user sees it, asked in this process (a
    `triggerstream` process takes 0.5 s; tests/unit/test_cli.py compares the help of
    real processes). Its width is the one click gives a process whose output is read
    (not a terminal): $COLUMNS, else 80, at most 80, less 2 (CliRunner would force 80)."""
    columns = int(os.environ.get("COLUMNS") or 80)
    shown = CliRunner().invoke(
        main,
        [*command, "--help"],
        prog_name="triggerstream",
        terminal_width=max(min(columns, 80) - 2, 50),
    )
    assert shown.exit_code == 0, shown.output
    return shown.stdout


def commands() -> list[list[str]]:
    """Every command, as `triggerstream --help` lists them (groups with theirs)."""

    def listed(*command: str) -> list[str]:
        shown = help_of(*command)
        if "Commands:" not in shown:
            return []
        return re.findall(r"^  (\w+)\s", shown.split("Commands:", 1)[1], re.M)

    return [[name, *sub] for name in listed() for sub in ([[s] for s in listed(name)] or [[]])]


def test_every_option_of_every_command_is_in_the_readme() -> None:
    missing = []
    every = commands()
    for command in every:
        shown = help_of(*command)
        for option in set(re.findall(r"(?<![\w-])(--[a-z][a-z-]+)", shown)) - {"--help"}:
            # A negative flag goes with its positive one (--react / --no-react).
            if not any(
                re.search(rf"(?<![\w-]){named}(?![\w-])", README)
                for named in (option, option.replace("--no-", "--"))
            ):
                missing.append(f"triggerstream {' '.join(command)} {option}")
    assert not missing, f"not in the README: {missing}"
    assert len(every) >= 10


def test_every_reason_code_is_in_the_readme() -> None:
    events = ROOT / "src" / "triggerstream" / "events"
    source = "\n".join(path.read_text() for path in sorted(events.glob("*.py")))
    codes = set(re.findall(r'InvalidEvent\(\s*"([a-z_]+)"', source))
    codes |= set(re.findall(r'": "([a-z_]+)",\n', source.split("_CODES", 1)[1].split("}", 1)[0]))
    assert {"not_json", "unknown_topic", "out_of_range"} <= codes
    assert sorted(code for code in codes if f"`{code}`" not in README) == []


def test_the_layout_names_every_folder_of_tests() -> None:
    layout = README.split("## Development", 1)[1]
    folders = sorted(p.name for p in (ROOT / "tests").iterdir() if list(p.glob("test_*.py")))
    assert folders == ["integration", "reliability", "unit"]
    assert [f for f in folders if f"tests/{f}/" not in layout] == []
