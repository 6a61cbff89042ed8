"""The worker's HTTP endpoints on ``TRIGGERSTREAM_WEB_PORT`` (docs/contract.md section 11),
served by faust's web server, which starts before the consumer joins its group:

- ``/metrics``: every metric of :mod:`triggerstream.worker.metrics`, in Prometheus'
  text format, with the process and Python runtime metrics prometheus_client adds;
- ``/healthz``: 200 while the process lives (a liveness probe);
- ``/readyz``: 200 once partitions are assigned and tables recovered, 503 before and
  during a rebalance (a readiness probe), with the partitions owned in the body;
- ``/users/{user_id}`` and ``/``: the inspector (:mod:`triggerstream.worker.inspector`),
  one user's state, rules, pending timers and offer history. These are personal data:
  keep the port private to the operators, as ``web_host`` (``TRIGGERSTREAM_WEB_HOST``)
  and ``web_port`` allow (bind ``127.0.0.1``, or a network only they reach).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import faust
import orjson
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from triggerstream.worker.inspector import Inspector, page

PRIVATE = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
"""A user's data is not kept by caches on the way."""
PAGE_POLICY = (
    "default-src 'none'; connect-src 'self'; script-src 'unsafe-inline'; "
    "style-src 'unsafe-inline'; img-src data:; form-action 'none'; frame-ancestors 'none'"
)
"""The page loads nothing but its own inline CSS and script, and asks only this server."""


def add_routes(
    app: faust.App, readiness: Callable[[], list[int] | None], inspector: Inspector
) -> None:
    """The endpoints on the app's web server; ``readiness`` gives the partitions owned
    once the worker is ready (None before). Registered before faust's own, so the
    inspector's page is the one served at ``/``."""

    @app.page("/", name="triggerstream.inspector")
    async def index(view: Any, request: Any) -> Any:
        return view.html(page(), headers={**PRIVATE, "Content-Security-Policy": PAGE_POLICY})

    @app.page("/users/{user_id}", name="triggerstream.user")
    async def user(view: Any, request: Any, user_id: str) -> Any:
        status, body = await inspector.user(user_id)
        return view.bytes(
            orjson.dumps(body), content_type="application/json", status=status, headers=PRIVATE
        )

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
