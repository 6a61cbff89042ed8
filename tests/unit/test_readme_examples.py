"""The README's shell examples run as written (issue 22): every ```sh block right after
the comment ``<!-- tested: tests/unit/test_readme_examples.py -->`` runs, in README
order, in one temporary folder that has the repository's examples/, and must succeed
and print every line of the output block shown after it (the first plain ``` block
before the next heading or shell block). Lines with "..." are left out on purpose;
durations and rates differ from run to run and are not compared."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import ROOT

MARKER = "<!-- tested: tests/unit/test_readme_examples.py -->"
TIMING = re.compile(r"in \d+(\.\d+)?s( \([\d,]+/s\))?")


@dataclass
class Example:
    commands: list[str]
    shown: list[str]


def examples(readme: str) -> list[Example]:
    found = []
    for part in readme.split(MARKER)[1:]:
        body = part.lstrip("\n")
        assert body.startswith("```sh\n"), (
            f"the tested marker is not right before a sh block: {body[:80]!r}"
        )
        script, rest = body.removeprefix("```sh\n").split("\n```", 1)
        commands = [line for line in script.splitlines() if line and not line.startswith("#")]
        section = re.split(r"^#{2,3} |^```sh$", rest, maxsplit=1, flags=re.M)[0]
        block = re.search(r"^```\n(.*?)^```$", section, re.M | re.S)
        shown = block.group(1).splitlines() if block else []
        found.append(Example(commands, [line for line in shown if line.strip()]))
    return found


def normal(line: str) -> str:
    return TIMING.sub("in Ns", line.rstrip())


def test_the_readme_examples_run_and_print_what_the_readme_shows(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    tested = examples(readme)
    commands = [command for example in tested for command in example.commands]
    for name in ("generate", "replay", "report", "explain", "compare"):
        assert any(command.startswith(f"triggerstream {name} ") for command in commands), name
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    (tmp_path / "topics").symlink_to(ROOT / "topics")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIGGERSTREAM_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["COLUMNS"] = "120"
    for example in tested:
        printed: list[str] = []
        for command in example.commands:
            ran = subprocess.run(
                ["bash", "-c", command],
                cwd=tmp_path,
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            assert ran.returncode == 0, f"{command}: {ran.stderr}"
            printed += (ran.stdout + ran.stderr).splitlines()
        have = {normal(line) for line in printed}
        missing = [line for line in example.shown if "..." not in line and normal(line) not in have]
        assert missing == [], f"{example.commands} did not print these README lines"
