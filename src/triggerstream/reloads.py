"""The last rules reload of a worker, read from its log, for the demo's view.

The log says why a change was refused (the metric only counts it), and the demo already
has the log: it reads what the worker appended since the last look."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

STAMPED = re.compile(r"^\[\d{4}-\d\d-\d\d (\d\d:\d\d:\d\d)[,.]\d+\] \[\d+\] \[[A-Z]+\] (.*)$")
"""A log line as the worker writes it: ``[date time,ms] [pid] [LEVEL] message``."""
PROBLEMS = re.compile(r"^(\d+) problem\(s\) in ")


@dataclass(frozen=True)
class Reload:
    """One change of the rules file, as the worker reported it."""

    at: str
    """The worker's wall clock, HH:MM:SS."""
    applied: bool
    why: str
    """Applied: how many rules run now; refused: the first problem."""

    def describe(self) -> str:
        if self.applied:
            return f"rules: a change applied at {self.at} ({self.why})"
        return f"rules: a change refused at {self.at}, the running rules stay: {self.why}"


class RulesReloads:
    """Follows a worker's log from ``start`` and keeps its last rules reload."""

    def __init__(self, log: Path, start: int, rules: Path) -> None:
        self.log = log
        self.offset = start
        self.rules = rules
        self.last: Reload | None = None
        self._refused_at: str | None = None
        """A refusal's time while its problems (the next lines) are still to come."""
        self._problems = 0

    def describe(self) -> str:
        return "rules: loaded at start" if self.last is None else self.last.describe()

    def poll(self) -> None:
        """Read the whole lines the worker appended since the last poll."""
        try:
            with self.log.open("rb") as log:
                log.seek(self.offset)
                chunk = log.read()
        except OSError:
            return
        whole, newline, _ = chunk.rpartition(b"\n")
        if not newline:
            return
        self.offset += len(whole) + 1
        for line in whole.decode(errors="replace").splitlines():
            self.read(line.rstrip())

    def read(self, line: str) -> None:
        stamped = STAMPED.match(line)
        if stamped is None:
            if self._refused_at is not None and line:
                self._problem(line)
            return
        at, message = stamped.groups()
        self._refused_at = None
        if message.startswith("rules reloaded from "):
            self.last = Reload(at, True, message.rsplit(": ", 1)[-1])
        elif message.startswith("rules file changed but refused"):
            self._refused_at = at
            self.last = Reload(at, False, "the worker's log says why")
        elif message.startswith("cannot read the rules file"):
            self.last = Reload(at, False, message.removesuffix("; keeping the running rules"))

    def _problem(self, line: str) -> None:
        """The lines after a refusal: ``N problem(s) in FILE:``, then one a line."""
        assert self._refused_at is not None
        counted = PROBLEMS.match(line)
        if counted is not None:
            self._problems = int(counted.group(1))
            return
        why = line.replace(str(self.rules), self.rules.name, 1)
        if self._problems > 1:
            why += f" (and {self._problems - 1} more)"
        self.last = Reload(self._refused_at, False, why)
        self._refused_at = None
        self._problems = 0
