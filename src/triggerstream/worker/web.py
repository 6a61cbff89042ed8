"""The worker's HTTP endpoints on ``TRIGGERSTREAM_WEB_PORT`` (DESIGN.md section 11),
served by faust's web server, which starts before the consumer joins its group:

- ``/metrics``: every metric of :mod:`triggerstream.worker.metrics`, in Prometheus'
  text format, with the process and Python runtime metrics prometheus_client adds;
- ``/healthz``: 200 while the process lives (a liveness probe);
- ``/readyz``: 200 once partitions are assigned and tables recovered, 503 before and
  during a rebalance (a readiness probe), with the partitions owned in the body.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

if TYPE_CHECKING:
    from triggerstream.worker.stream import TriggerWorker


def add_routes(worker: TriggerWorker) -> None:
    app = worker.app

    @app.page("/metrics", name="triggerstream.metrics")
    async def metrics(view: Any, request: Any) -> Any:
        return view.bytes(generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST})

    @app.page("/healthz", name="triggerstream.healthz")
    async def healthz(view: Any, request: Any) -> Any:
        return view.json({"status": "alive"})

    @app.page("/readyz", name="triggerstream.readyz")
    async def readyz(view: Any, request: Any) -> Any:
        if worker.ready:
            return view.json({"status": "ready", "partitions": worker.partitions})
        return view.json(
            {
                "status": "not ready",
                "reason": "waiting for partitions to be assigned and tables recovered",
            },
            status=503,
        )
