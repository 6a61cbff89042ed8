"""``triggerstream replay``: the engine over JSON Lines files, with no broker.

The second shell around the same core as the worker. It keeps states in a dict and
each user's timers on that user's event time (the latest ``occurred_at`` of the user read
so far): timers due by a user's event fire before it; a timer already due when it is set
fires right after the event that set it; at the end, everything due up to the later of
stream time (the latest ``occurred_at`` of all) and ``until`` fires, earliest first.
Keeping the clock per user means the way files interleave users never changes a user's
decisions. Triggers are dated at their event time: ``emitted_at``
equals ``triggered_at`` here, so a replay is repeatable to the byte.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import heapq
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import orjson

from triggerstream.core.engine import Engine, Step
from triggerstream.core.recommend import CoPurchaseCounts
from triggerstream.core.records import Decision
from triggerstream.core.state import UserState
from triggerstream.events import BOM, Event, InvalidEvent, decode_line, refuse_future
from triggerstream.records import DeadLetter
from triggerstream.topics import partition_of

Writer = Callable[[bytes], object]


@dataclass
class ReplaySummary:
    """What a replay read and decided: printed to stderr at the end."""

    lines: int = 0
    events: int = 0
    invalid: Counter[str] = field(default_factory=Counter)
    duplicates: int = 0
    decisions: Counter[str] = field(default_factory=Counter)
    suppressed: Counter[str] = field(default_factory=Counter)
    triggers: Counter[str] = field(default_factory=Counter)
    attributions: int = 0
    users: int = 0
    seconds: float = 0.0

    def render(self) -> str:
        rate = self.lines / self.seconds if self.seconds > 0 else 0.0
        invalid = sum(self.invalid.values())
        lines = [
            f"read {self.lines} line(s) in {self.seconds:.2f}s ({rate:,.0f}/s): "
            f"{self.events} event(s), {invalid} invalid, {self.duplicates} duplicate(s), "
            f"{self.users} user(s)",
        ]
        if invalid:
            lines.append("invalid by reason: " + _counts(self.invalid))
        lines.append("decisions: " + (_counts(self.decisions) or "none"))
        if self.suppressed:
            lines.append("suppressed by reason: " + _counts(self.suppressed))
        lines.append("triggers by channel: " + (_counts(self.triggers) or "none"))
        if self.attributions:
            lines.append(f"attributions: {self.attributions}")
        return "\n".join(lines)


def _counts(counter: Counter[str]) -> str:
    return ", ".join(f"{name} {count}" for name, count in counter.most_common())


@dataclass
class Outputs:
    """Where records go; None drops them."""

    triggers: Writer | None
    decisions: Writer | None = None
    attributions: Writer | None = None
    dead_letters: Writer | None = None


class Replay:
    """Feeds lines to the engine in order and keeps the timers on stream time."""

    def __init__(
        self,
        engine: Engine,
        outputs: Outputs,
        partitions: int = 1,
        now: float | None = None,
        max_future: dt.timedelta = dt.timedelta(hours=1),
    ) -> None:
        self.engine = engine
        self.now = time.time() if now is None else now
        """When the events are read (``--now``): one dated more than ``max_future``
        after it is refused ``from_future``, as the worker refuses it on the wall clock."""
        self.max_future = max_future
        # Co-purchase counts are learned per input partition, as the worker learns them
        # (a worker sees only its partitions' orders): one engine, with its own counts,
        # per partition of Kafka's default partitioner.
        self.partitions = partitions
        self.engines = [engine] + [
            Engine(engine.rules, CoPurchaseCounts()) for _ in range(partitions - 1)
        ]
        self.outputs = outputs
        self.states: dict[str, UserState] = {}
        self.stream_time = float("-inf")
        self.summary = ReplaySummary()

    def feed(self, lines: Iterable[tuple[str, int, bytes]]) -> None:
        """Process ``(file, line number, line)`` in order."""
        for source, number, line in lines:
            self.summary.lines += 1
            try:
                event = refuse_future(decode_line(line)[1], self.now, self.max_future)
            except InvalidEvent as error:
                self._dead_letter(source, number, line, error)
                continue
            self.handle(event)

    def handle(self, event: Event) -> None:
        """One valid event, read and validated (by :meth:`feed`, or once for several
        replays by ``compare``)."""
        self.summary.events += 1
        at = event.at
        user = event.user_id
        step = self._engine_for(user).handle(user, self.states.get(user), event)
        if step.duplicate:
            self.summary.duplicates += 1
            return
        if at > self.stream_time:
            self.stream_time = at
        self._take(user, step)

    def finish(self, until: float | None = None) -> ReplaySummary:
        """Fire everything due up to the later of stream time and ``until``."""
        end = self.stream_time if until is None else max(self.stream_time, until)
        due = [
            (next_due, user)
            for user, state in self.states.items()
            if (next_due := self.engine.next_due(state)) is not None
        ]
        heapq.heapify(due)
        while due and due[0][0] <= end:
            when, user = heapq.heappop(due)
            state = self.states[user]
            self._take(user, self._engine_for(user).fire_due(user, state, when))
            later = self.engine.next_due(state)
            if later is not None:
                heapq.heappush(due, (later, user))
        self.summary.users = len(self.states)
        return self.summary

    def _engine_for(self, user: str) -> Engine:
        if self.partitions == 1:
            return self.engine
        return self.engines[partition_of(user, self.partitions)]

    def _take(self, user: str, step: Step) -> None:
        if step.state is None:
            self.states.pop(user, None)
        else:
            self.states[user] = step.state
        for decision in step.decisions:
            self._count(decision)
            if self.outputs.decisions:
                self.outputs.decisions(decision.to_json())
        for trigger in step.triggers:
            self.summary.triggers[trigger.channel] += 1
            if self.outputs.triggers:
                self.outputs.triggers(trigger.to_json())
        for attribution in step.attributions:
            self.summary.attributions += 1
            if self.outputs.attributions:
                self.outputs.attributions(attribution.to_json())

    def _count(self, decision: Decision) -> None:
        self.summary.decisions[decision.outcome] += 1
        if decision.outcome == "suppressed" and decision.reason:
            self.summary.suppressed[decision.reason] += 1

    def _dead_letter(self, source: str, number: int, line: bytes, error: InvalidEvent) -> None:
        self.summary.invalid[error.code] += 1
        if self.outputs.dead_letters is None:
            return
        topic = None
        try:
            document = orjson.loads(line)
            if isinstance(document, dict) and isinstance(document.get("topic"), str):
                topic = document["topic"]
        except orjson.JSONDecodeError:
            pass
        record = DeadLetter.of_value(
            line, error.code, error.reason, topic=topic, file=source, line=number
        )
        self.outputs.dead_letters(record.model_dump_json(exclude_none=True).encode())


def read_lines(
    paths: list[Path], progress: Callable[[int], None] | None = None
) -> Iterator[tuple[str, int, bytes]]:
    """``(file, line number, line)`` of every non-blank line, files in the order given;
    ``-`` is stdin (named ``stdin``)."""
    for path in paths:
        stdin = str(path) == "-"
        with contextlib.nullcontext(sys.stdin.buffer) if stdin else path.open("rb") as handle:
            name = "stdin" if stdin else str(path)
            for number, raw in enumerate(handle, start=1):
                if progress is not None:
                    progress(len(raw))
                line = raw.strip()
                if number == 1:
                    line = line.removeprefix(BOM)  # a file saved by a Windows tool
                if line:
                    yield name, number, line


def line_writer(handle: IO[bytes], name: str | None = None) -> Writer:
    """Writes a record and a newline to ``handle``; an OSError (a full disk) names the
    file."""

    def write(record: bytes) -> None:
        try:
            handle.write(record + b"\n")
        except OSError as error:
            raise OSError(error.errno, error.strerror, name or handle.name) from None

    return write


def file_writer(path: Path | None, files: contextlib.ExitStack) -> Writer | None:
    """A writer of records to ``path`` ('-': stdout; None: none), its file opened now and
    closed with ``files``; a close that fails (a full disk) names the file."""
    if path is None:
        return None
    if str(path) == "-":
        return line_writer(sys.stdout.buffer, "stdout")
    handle = path.open("wb")

    def close() -> None:
        try:
            handle.close()  # writes what is buffered: may meet a full disk
        except OSError as error:
            raise OSError(error.errno, error.strerror, str(path)) from None

    files.callback(close)
    return line_writer(handle, str(path))


def run(
    engine: Engine,
    paths: list[Path],
    outputs: Outputs,
    until: float | None = None,
    progress: Callable[[int], None] | None = None,
    partitions: int = 1,
    now: float | None = None,
    max_future: dt.timedelta = dt.timedelta(hours=1),
) -> ReplaySummary:
    """Replay files through the engine, as read at ``now`` (default: the wall clock);
    the summary of what happened."""
    began = time.perf_counter()
    replay = Replay(engine, outputs, partitions, now, max_future)
    replay.feed(read_lines(paths, progress))
    summary = replay.finish(until)
    summary.seconds = time.perf_counter() - began
    return summary
