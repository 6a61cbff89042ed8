"""The worker's inspector (docs/contract.md section 16): ``GET /users/{user_id}``, the
explain view of one user whose partition this worker owns, as of the wall clock; and
the page at ``/`` (``inspector.html``) where a person types a user id and reads it.

It shows personal data (a user's profile, consent, purchases and offers), one user a
request and never a list: it is served where the metrics are (``web_host``,
``web_port``), which must stay private to the operators.

A read waits for the batch under way to end, then holds the worker's processing lock
only to read and decode the user's stored bytes and build the view, with no ``await``
in between: the batch loop is kept waiting that long (a millisecond or so, ``held``)
and the state read is the one the last batch stored, never a state half-way through a
batch. The decoded copy is the inspector's own; the states the batch loop keeps decoded
(``StateStore.recent``) are never handed out.
"""

from __future__ import annotations

import time
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any

from triggerstream.explain.kept import kept_decisions, what_is_kept
from triggerstream.explain.view import explain_user
from triggerstream.topics import partition_of
from triggerstream.worker.codec import decode

if TYPE_CHECKING:
    from triggerstream.worker.stream import TriggerWorker

NOW_IS = "the worker's clock"
"""``state.now_is`` of the inspector's view: it explains a user as of now."""
NOT_READY = "waiting for partitions to be assigned and tables recovered"


class Inspector:
    """One user's view at a time, read from the worker's store between batches."""

    def __init__(self, worker: TriggerWorker) -> None:
        self.worker = worker
        self.held = 0.0
        """Seconds the last read held the processing lock."""

    async def user(self, user_id: str) -> tuple[int, dict[str, Any]]:
        """The HTTP status and JSON body for ``GET /users/{user_id}``."""
        worker = self.worker
        partition = partition_of(user_id, worker.partition_count)
        async with worker.processing:
            began = time.perf_counter()
            # Read once the lock is held: a rebalance may have begun while waiting.
            owned = worker.lifecycle.readiness()
            if owned is None:
                return 503, {"status": "not ready", "reason": NOT_READY}
            if partition not in owned:
                return 404, {
                    "error": "not_owned",
                    "user_id": user_id,
                    "partition": partition,
                    "partitions_owned": owned,
                    "detail": f"user {user_id} is on partition {partition}, which this "
                    "worker does not own: ask the worker whose /readyz lists it",
                }
            stored = worker.store.database(partition).get(user_id.encode())
            if stored is None:
                self.held = time.perf_counter() - began
                return 404, {
                    "error": "no_state",
                    "user_id": user_id,
                    "partition": partition,
                    "detail": f"this worker owns partition {partition} and keeps no state "
                    f"for user {user_id} (never seen, or erased)",
                }
            state = decode(stored)[0]
            engine = worker.engine(partition)
            view = explain_user(
                engine, user_id, state, time.time(), kept_decisions(user_id, state), NOW_IS
            )
            self.held = time.perf_counter() - began
        view["partition"] = partition
        view["decisions_are"] = what_is_kept(engine.attribution_window)
        return 200, view


@cache
def page() -> str:
    """The inspector's page: plain HTML with its CSS and JavaScript inline."""
    return resources.files("triggerstream.worker").joinpath("inspector.html").read_text("utf-8")
