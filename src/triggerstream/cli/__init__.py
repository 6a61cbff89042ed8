"""The ``triggerstream`` command line (docs/contract.md section 9).

Every command reads its settings once, from ``TRIGGERSTREAM_*`` and its flags (a flag
wins). Problems a user can fix are one line on stderr with the fix, and exit status 2
for unusable settings, arguments or an unreachable broker.

The group is :data:`main` (``app.py``); each module here adds its commands to it and
calls functions that live with their domain (``replay.py``, ``report.py``, ``kafka.py``...).
"""

from triggerstream.cli import (  # noqa: F401  (each module adds its commands to main)
    broker,
    compare,
    demo,
    explain,
    generate,
    loadgen,
    produce,
    replay,
    report,
    rules,
    tail,
    topics,
    worker,
)
from triggerstream.cli.app import main

__all__ = ["main"]
