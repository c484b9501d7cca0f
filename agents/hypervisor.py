"""The hypervisor watcher: libvirt domain lifecycle events to ``hypervisor.events``.

libvirt-python runs on the asyncio loop through ``libvirtaio`` (libvirt's own
event loop glue), so lifecycle callbacks arrive on the loop thread with no
polling. Each callback becomes one :class:`~schemas.hypervisor.HypervisorEvent`
keyed by the VM uuid; a single producer task sends them in the order libvirt
reported them.

Events are lost while the connection is down (libvirtd restarts, the network to
a remote host drops), so after every (re)connect the watcher emits a full
reconciliation: every domain with its current state, ``reason = "reconcile"``.
A dropped connection is noticed through libvirt's close callback and, for
drivers that never call it, a ``isAlive`` check every ``alive_interval_s``;
reconnects back off like the agent sockets (3 s base, x1.5, 120 s cap).

``libvirt.open`` runs on the loop thread (libvirtaio's handles must be
registered there); for local URIs it takes milliseconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from typing import Any

import mode

from agents.libvirt_states import event_state, state_name
from agents.metrics import HypervisorMetrics
from infra.backoff import Backoff
from infra.config import Settings
from infra.kafka_io import ensure_settings_topics, make_producer
from schemas.hypervisor import RECONCILE, HypervisorEvent, encode_event
from schemas.topics import Topics

__all__ = ["HypervisorWatcher"]

log = logging.getLogger(__name__)

_registered_loops: set[int] = set()


def _register_event_impl(loop: asyncio.AbstractEventLoop) -> None:
    """libvirt takes one event implementation per process; register it for this loop once."""
    import libvirtaio

    if id(loop) not in _registered_loops:
        libvirtaio.virEventRegisterAsyncIOImpl(loop=loop)
        _registered_loops.add(id(loop))


class HypervisorWatcher(mode.Service):  # type: ignore[misc]  # mode ships no type information
    """Watches one libvirt URI; see the module docstring.

    Counters for health and tests: ``events`` produced from callbacks,
    ``reconciled`` records from reconciliations, ``connects`` successful
    connections (so ``connects - 1`` reconnects).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        uri: str | None = None,
        producer: Any = None,
        reconnect_base_s: float = 3.0,
        reconnect_cap_s: float = 120.0,
        alive_interval_s: float = 1.0,
        **kwargs: Any,
    ) -> None:
        uri = uri if uri is not None else settings.libvirt_uri
        if not uri:
            raise ValueError("HypervisorWatcher needs a libvirt URI (VMPULSE_LIBVIRT_URI)")
        self.settings = settings
        self.uri = uri
        self.topics = Topics(settings.kafka.topic_prefix)
        self._producer: Any = producer
        self._owns_producer = producer is None
        self._backoff = Backoff(reconnect_base_s, 1.5, max(reconnect_cap_s, reconnect_base_s))
        self._alive_interval_s = alive_interval_s
        self._queue: asyncio.Queue[HypervisorEvent] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._dropped: asyncio.Event | None = None
        self.connection: Any = None
        self.events = 0
        self.reconciled = 0
        self.connects = 0
        self.metrics = HypervisorMetrics(self)  # its health port's /metrics
        super().__init__(**kwargs)

    @property
    def connected(self) -> bool:
        """Whether a libvirt connection is open now."""
        return self.connection is not None

    @property
    def waiting(self) -> int:
        """Events reported by libvirt, not yet handed to the producer."""
        return self._queue.qsize()

    async def on_start(self) -> None:
        if self._producer is None:
            if not self.settings.kafka.bootstrap:
                raise ValueError("HypervisorWatcher needs settings.kafka.bootstrap or a producer")
            # Standalone (`vmpulse hypervisor`): the topics may not exist yet.
            await ensure_settings_topics(self.settings)
            self._producer = make_producer(
                self.settings.kafka.bootstrap,
                client_id="vmpulse-hypervisor",
                auth=self.settings.kafka.auth,
            )
            await self._producer.start()
        _register_event_impl(asyncio.get_running_loop())
        self._tasks = [
            asyncio.create_task(self._send_loop(), name="hypervisor-send"),
            asyncio.create_task(self._watch_loop(), name="hypervisor-watch"),
        ]

    async def on_stop(self) -> None:
        watch = self._tasks[1] if len(self._tasks) > 1 else None
        if watch is not None:
            watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watch
        # Send what was already reported, then stop the sender.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(10):
                await self._queue.join()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self._producer is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._producer.flush(), 10)
            if self._owns_producer:
                await self._producer.stop()
                self._producer = None

    async def _send_loop(self) -> None:
        while True:
            event = await self._queue.get()
            try:
                await self._producer.send(
                    self.topics.hypervisor_events,
                    key=event.vm_id.encode(),
                    value=encode_event(event),
                )
            except Exception as exc:
                log.error("cannot produce hypervisor event for VM %s: %r", event.vm_id, exc)
            finally:
                self._queue.task_done()

    async def _watch_loop(self) -> None:
        import libvirt

        while True:
            try:
                conn = libvirt.open(self.uri)
            except libvirt.libvirtError as exc:
                delay = self._backoff.next_delay()
                log.warning("cannot connect to %s: %s; retrying in %.1fs", self.uri, exc, delay)
                await asyncio.sleep(delay)
                continue
            self._backoff.reset()
            self.connects += 1
            self.connection = conn
            dropped = self._dropped = asyncio.Event()
            callback_id: int | None = None
            try:
                with contextlib.suppress(libvirt.libvirtError):
                    conn.registerCloseCallback(lambda *_, ev=dropped: ev.set(), None)
                callback_id = conn.domainEventRegisterAny(
                    None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, self._on_lifecycle, None
                )
                self._reconcile(conn)
                log.info("watching libvirt %s", self.uri)
                await self._wait_dropped(conn, dropped)
                log.warning("libvirt connection to %s dropped; reconnecting", self.uri)
            except libvirt.libvirtError as exc:
                log.warning("libvirt connection to %s failed: %s", self.uri, exc)
            finally:
                self.connection = None
                if callback_id is not None:
                    with contextlib.suppress(libvirt.libvirtError):
                        conn.domainEventDeregisterAny(callback_id)
                with contextlib.suppress(libvirt.libvirtError):
                    conn.unregisterCloseCallback()
                with contextlib.suppress(libvirt.libvirtError):
                    conn.close()
            await asyncio.sleep(self._backoff.next_delay())

    async def _wait_dropped(self, conn: Any, dropped: asyncio.Event) -> None:
        import libvirt

        while not dropped.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(dropped.wait(), self._alive_interval_s)
            try:
                if not conn.isAlive():
                    return
            except libvirt.libvirtError:
                return

    def _reconcile(self, conn: Any) -> None:
        now = dt.datetime.now(dt.UTC)
        for domain in conn.listAllDomains():
            state, _reason = domain.state()
            self._queue.put_nowait(
                HypervisorEvent(domain.UUIDString().lower(), state_name(state), RECONCILE, now)
            )
            self.reconciled += 1

    def _on_lifecycle(self, conn: Any, domain: Any, event: int, detail: int, opaque: Any) -> None:
        try:
            mapped = event_state(event, detail)
            if mapped is None:
                log.debug("ignoring lifecycle event %d/%d", event, detail)
                return
            state, reason = mapped
            vm_id = domain.UUIDString().lower()
            self._queue.put_nowait(HypervisorEvent(vm_id, state, reason, dt.datetime.now(dt.UTC)))
            self.events += 1
        except Exception:  # a callback must never raise into libvirt's loop
            log.exception("lifecycle callback failed")
