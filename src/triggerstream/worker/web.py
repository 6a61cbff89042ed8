"""The worker's HTTP endpoints on ``TRIGGERSTREAM_WEB_PORT`` (docs/contract.md section 11),
served by faust's web server, which starts before the consumer joins its group:

- ``/metrics``: every metric of :mod:`triggerstream.worker.metrics`, in Prometheus'
  text format, with the process and Python runtime metrics prometheus_client adds;
- ``/healthz``: 200 while the process lives (a liveness probe);
- ``/readyz``: 200 once partitions are assigned and tables recovered, 503 before and
  during a rebalance (a readiness probe), with the partitions owned in the body.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import faust
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest


def add_routes(app: faust.App, readiness: Callable[[], list[int] | None]) -> None:
    """The endpoints on the app's web server; ``readiness`` gives the partitions owned
    once the worker is ready (None before)."""

    @app.page("/metrics", name="triggerstream.metrics")
    async def metrics(view: Any, request: Any) -> Any:
        return view.bytes(generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST})

    @app.page("/healthz", name="triggerstream.healthz")
    async def healthz(view: Any, request: Any) -> Any:
        return view.json({"status": "alive"})

    @app.page("/readyz", name="triggerstream.readyz")
    async def readyz(view: Any, request: Any) -> Any:
        partitions = readiness()
        if partitions is not None:
            return view.json({"status": "ready", "partitions": partitions})
        return view.json(
            {
                "status": "not ready",
                "reason": "waiting for partitions to be assigned and tables recovered",
            },
            status=503,
        )
