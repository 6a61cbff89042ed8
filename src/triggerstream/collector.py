"""The garbage collector set for a process that holds many long-lived objects.

The worker and ``replay`` keep a decoded state per user: hundreds of thousands of
long-lived objects, while every event makes a few short-lived ones. With CPython's
default (a young collection every 700 allocations, a full one every 100 of those), a
full collection walks every state again and again: a tenth of the worker's time in
py-spy, a quarter of replay's on a month of demo traffic (35,000 events/s against
47,000 with these settings, ``benchmarks/replay_throughput.py``).
"""

from __future__ import annotations

import gc

YOUNG_EVERY = 50_000
"""Allocations between two young-generation collections (CPython's default: 700)."""


def for_many_objects() -> None:
    """Freeze what is alive now (modules, services, the rules: alive as long as the
    process) out of the collector's way, and collect less often."""
    gc.freeze()
    gc.set_threshold(YOUNG_EVERY, 20, 20)
