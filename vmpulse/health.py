"""The health port of a stage: ``/healthz``, ``/readyz`` and ``/metrics`` over HTTP.

Orchestrators ask a process over HTTP whether it lives and whether it is ready
(Docker's HEALTHCHECK, compose's ``depends_on: service_healthy``, Kubernetes'
probes). The gateway answers on its own port too; the bridge and the worker have
no HTTP server of their own, so every stage gets this small one when
``VMPULSE_HEALTH_ADDR`` is set (the image sets ``0.0.0.0:8081``).

- ``/healthz``: 200 while the event loop answers (a stuck loop cannot answer).
- ``/readyz``: 200 once the stage does its work (the stage's own predicate: the
  bridge has its producer and listeners, the worker has joined its consumer
  group, the gateway has read the directory), 503 before and while stopping.
- ``/metrics``: the stage's Prometheus registry.

:func:`probe` is the client side, for ``vmpulse probe`` (the image's
HEALTHCHECK, which has no curl).
"""

from __future__ import annotations

import http.client
from collections.abc import Callable
from typing import Any

import mode
from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from infra.startup import listening

__all__ = ["HealthServer", "probe"]


class HealthServer(mode.Service):  # type: ignore[misc]  # mode ships no type information
    """``/healthz``, ``/readyz``, ``/metrics`` on host:port, for one stage's process.

    Start it before the stage (a worker's services start in order): ``/healthz``
    then answers while the stage still starts, and ``/readyz`` says 503 until it is
    ready. On stop it says 503 at once, then closes.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        ready: Callable[[], bool],
        registry: CollectorRegistry,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._host = host
        self._port = port
        self._ready = ready
        self._registry = registry
        self._runner: web.AppRunner | None = None
        self._stopping = False
        self.port = port
        """The bound port (the configured one, or the one the system chose for 0)."""

    async def on_start(self) -> None:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self._host, self._port)
        with listening("health checks", self._host, self._port, "VMPULSE_HEALTH_ADDR"):
            await site.start()
        self._runner = runner
        if runner.addresses:
            self.port = int(runner.addresses[0][1])

    async def on_stop(self) -> None:
        self._stopping = True
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def _healthz(self, _: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _readyz(self, _: web.Request) -> web.Response:
        try:
            ready = not self._stopping and bool(self._ready())
        except Exception:  # a predicate that fails says "not ready", never 500
            ready = False
        return web.json_response(
            {"status": "ready" if ready else "not ready"}, status=200 if ready else 503
        )

    async def _metrics(self, _: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(self._registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )


def probe(host: str, port: int, path: str = "/readyz", timeout_s: float = 4.0) -> tuple[bool, str]:
    """GET ``path`` on host:port: (answered 200, what it said or why it failed).

    A wildcard listen address (``0.0.0.0``, ``::``) is probed on loopback.
    """
    target = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    conn = http.client.HTTPConnection(target, port, timeout=timeout_s)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        body = resp.read(512).decode("utf-8", "replace").strip()
        return resp.status == 200, f"{resp.status} {body}"
    except OSError as exc:
        return False, f"no answer from {target}:{port}{path}: {exc}"
    finally:
        conn.close()
