"""Where a worker notices it may have lost its partitions: cut off from its group.

A worker whose heartbeats go unanswered for longer than the session timeout may be out
of the group: the coordinator gives an expired member's partitions to the other
workers, who read them again from the last committed offsets. aiokafka keeps such a
member's partitions and says nothing; a worker that went on would decide for users
another worker now decides for, and emit what it decided once its network came back.

From the worker's side a cut in its own network and a coordinator down look alike, so
the worker watches when the coordinator last answered a heartbeat
(``FencedApp.heard_from_group``, set from the consumer's thread), and once that is
longer ago than the session timeout it is **cut off**:
- not ready (``/readyz`` answers 503, the ready gauge is 0), no batch begun, no timer
  fired, nothing emitted; a batch under way waits for the verdict before it stores
  anything;
- it says so, in one line.

The coordinator's next answer is the verdict:
- **still a member** (the coordinator was away, or the worker's network came back before
  the group gave its partitions on): nothing else owned them meanwhile, the worker goes
  on where it was, and says so;
- **out of the group** (its generation is unknown to the coordinator): the partitions
  are **lost**. What was read and not processed is given back, a batch under way is
  abandoned (stream.py: its states and offsets are not kept), and aiokafka joins the
  group again; the partitions the worker is then given come by the same rebalance as any
  other, read from the committed offsets, their tables recovered from their changelogs,
  where the records it had sent before the cut and that arrived after the new owner's
  are left out (changelog.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from triggerstream.worker import metrics
from triggerstream.worker.fence import reconnect_producer

if TYPE_CHECKING:
    from triggerstream.worker.stream import TriggerWorker

log = logging.getLogger("triggerstream.worker")

SESSION_CHECK_INTERVAL = 0.5
"""Seconds between two looks at when the group last answered."""


class GroupSession:
    """Whether the worker is cut off from its group, and how many times it lost its
    partitions that way."""

    def __init__(self, worker: TriggerWorker) -> None:
        self.worker = worker
        self.cut_off_at: float | None = None
        """When the worker counted itself cut off (None: the group answers)."""
        self.lost = 0
        """How many times the group said this worker was no longer a member: a batch
        begun before (``Batch.session``) leaves nothing behind."""
        self.verdict = asyncio.Event()
        """Set while the group answers; cleared while the worker is cut off."""
        self.verdict.set()
        self._next_loss: asyncio.Future[None] | None = None
        """Resolved when the partitions are next lost (made when first awaited)."""

    async def check(self) -> None:
        """Count the worker cut off once the group has not answered for a session
        timeout (a timer, every ``SESSION_CHECK_INTERVAL``)."""
        lifecycle = self.worker.lifecycle
        if self.cut_off_at is not None or not lifecycle.ready:
            return
        silent = time.monotonic() - self.worker.app.heard_from_group
        timeout = self.worker.settings.session_timeout
        if silent <= timeout:
            return
        self.cut_off_at = time.monotonic() - silent
        self.verdict.clear()
        lifecycle.ready = False
        metrics.READY.set(0)
        log.warning(
            "cut off from the group: its coordinator has answered no heartbeat for %.1fs, "
            "more than the session timeout (%gs), so the group may have given partitions "
            "%s to other workers; this worker processes and emits nothing until the "
            "coordinator answers (check the network between it and %s)",
            silent,
            timeout,
            lifecycle.partitions,
            self.worker.settings.kafka_bootstrap,
        )

    def answered(self, member: bool) -> None:
        """The coordinator answered a heartbeat: the worker is still a member of its
        generation, or not (called on the worker's loop)."""
        lifecycle = self.worker.lifecycle
        cut_off_at = self.cut_off_at
        away = 0.0 if cut_off_at is None else time.monotonic() - cut_off_at
        if cut_off_at is not None:
            # What the producer sent while cut off is answered now, not once TCP's
            # backoff lets its connections try again (a commit, and with it a
            # rebalance, waits for it).
            reconnect_producer(self.worker.app)
        if member:
            if cut_off_at is None:
                return
            self.cut_off_at = None
            if lifecycle.assigned:
                lifecycle.ready = True
                metrics.READY.set(1)
            log.info(
                "the group's coordinator answered again after %.1fs: still a member, "
                "partitions %s still this worker's; processing goes on",
                away,
                lifecycle.partitions,
            )
        else:
            since = f"no heartbeat answered for {away:.1f}s" if cut_off_at else "session expired"
            self._lose(
                f"the group no longer counts this worker a member ({since}), and has given "
                "them to other workers; it joins the group again and takes what it is given",
                quiet=cut_off_at is None,
            )
        self.verdict.set()

    def give_up(self) -> None:
        """faust is about to wait for every message in hand: the worker stops, or a
        rebalance begins. Cut off from its group, the worker cannot finish its batch
        before the group answers, and would wait as long as the cut lasts: it counts
        its partitions lost instead (the batch is abandoned, its input read again by
        whoever owns the partitions next)."""
        cut_off_at = self.cut_off_at
        if cut_off_at is None:
            return
        self._lose(
            f"cut off from the group for {time.monotonic() - cut_off_at:.1f}s, it gives "
            "them up to stop or rebalance; what it had not stored is read again by whoever "
            "owns them next",
            quiet=False,
        )
        self.verdict.set()

    def _lose(self, why: str, quiet: bool) -> None:
        """The partitions are lost: a batch under way is abandoned, what was read and
        not processed given back."""
        lifecycle = self.worker.lifecycle
        partitions = lifecycle.partitions
        self.cut_off_at = None
        self.lost += 1
        if self._next_loss is not None and not self._next_loss.done():
            self._next_loss.set_result(None)
        lifecycle.ready = False
        metrics.READY.set(0)
        self.worker.intake.give_back()
        if quiet and not partitions:
            return  # joining (or between two assignments): nothing was lost
        log.warning("lost its partitions %s: %s", partitions, why)

    async def kept(self, session: int) -> bool:
        """Whether a batch begun when the worker had lost its partitions ``session``
        times may keep what it did: once the group has answered, whether it still
        counts the worker a member of the same generation."""
        await self.verdict.wait()
        return self.lost == session

    async def unless_lost(self, storing: Coroutine[Any, Any, bool], session: int) -> bool:
        """A batch's storing (begun when the partitions had been lost ``session``
        times), and what it returned; False as soon as the partitions are lost, without
        waiting for it. Left behind, it goes on waiting for the broker, and stores
        nothing more (it asks :attr:`lost` after every wait)."""
        task = asyncio.ensure_future(storing)
        if self.lost == session:
            if self._next_loss is None or self._next_loss.done():
                self._next_loss = asyncio.get_running_loop().create_future()
            await asyncio.wait((task, self._next_loss), return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            return task.result()
        task.add_done_callback(_forget)
        return False


def _forget(task: asyncio.Future[bool]) -> None:
    """A storing left behind ended: its outcome (an error too) no longer matters."""
    if not task.cancelled():
        task.exception()
