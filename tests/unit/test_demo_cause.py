"""The one line a failed demo gives as the cause, picked out of its worker's log."""

from __future__ import annotations

from pathlib import Path

import pytest

from triggerstream.demo import _cause

FAUST_CRASH = """\
[2026-12-03 07:18:44,299] [16906] [INFO] [^---_Recovery]: Highwater for active changelog
[2026-12-03 07:18:44,299] [16906] [ERROR] [^---_Recovery]: Crashed reason=ConsistencyError("The \
persisted offset for changelog topic partition TP(topic='t', partition=1) is higher\\nthan the \
last offset")
Traceback (most recent call last):
  File "faust/tables/recovery.py", line 417, in _restart_recovery
    raise ConsistencyError(
faust.exceptions.ConsistencyError: The persisted offset for changelog topic partition
[2026-12-03 07:18:45,316] [16906] [CRITICAL] [^Worker]: We experienced a crash!
"""
TRACEBACK = """\
[2026-12-03 07:18:44,299] [16906] [INFO] [^Worker]: Starting...
Traceback (most recent call last):
  File "x.py", line 1, in <module>
    open("/nope")
FileNotFoundError: [Errno 2] No such file or directory: '/nope'
[2026-12-03 07:18:45,316] [16906] [INFO] [^Worker]: Closing event loop
"""


@pytest.mark.parametrize(
    ("log", "cause"),
    [
        (
            "[INFO] starting\n[INFO] stopping\ntriggerstream: the state kept in d is ahead\n",
            "the state kept in d is ahead",
        ),
        (
            FAUST_CRASH,
            'ConsistencyError("The persisted offset for changelog topic partition '
            "TP(topic='t', partition=1) is higher than the last offset\")",
        ),
        (TRACEBACK, "FileNotFoundError: [Errno 2] No such file or directory: '/nope'"),
        ("[x] [1] [ERROR] [^Web]: port taken\n[x] [1] [INFO] [^Worker]: bye\n", "port taken"),
        ("[x] [1] [INFO] [^Worker]: bye\n\n", "[x] [1] [INFO] [^Worker]: bye"),
    ],
)
def test_the_cause_is_the_line_that_says_why(tmp_path: Path, log: str, cause: str) -> None:
    path = tmp_path / "worker.log"
    path.write_text(log)
    assert _cause(path) == cause


def test_only_this_runs_part_of_an_appended_log_counts(tmp_path: Path) -> None:
    path = tmp_path / "worker.log"
    path.write_text("triggerstream: an earlier run's problem\n")
    start = path.stat().st_size
    with path.open("a") as log:
        log.write("[x] [1] [INFO] [^Worker]: this run\n")
    assert _cause(path, start) == "[x] [1] [INFO] [^Worker]: this run"
    assert _cause(tmp_path / "missing.log") == "it wrote no log"
