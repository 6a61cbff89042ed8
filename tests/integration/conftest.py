"""Fixtures of the tests that run `triggerstream worker`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.worker_support import WorkerProcess


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[list[WorkerProcess]]:
    """Workers started by a test; none outlives it."""
    started: list[WorkerProcess] = []
    yield started
    for worker in started:
        worker.ensure_stopped()
