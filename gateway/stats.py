"""Operational figures of one gateway: Prometheus metrics and per-user delivery counts.

Each service owns its own ``CollectorRegistry`` (not the process-global one),
so two gateways in one process (tests, ``vmpulse up``) do not collide and each
``/metrics`` reports only its own sockets.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from prometheus_client import Counter, Gauge, generate_latest

from infra.process_metrics import stage_registry

__all__ = ["GatewayStats", "UserDeliveries"]


@dataclasses.dataclass(slots=True)
class UserDeliveries:
    delivered: int = 0
    failed: int = 0

    def as_dict(self) -> dict[str, float | int]:
        total = self.delivered + self.failed
        return {
            "delivered": self.delivered,
            "failed": self.failed,
            "successRate": (self.delivered / total) if total else 1.0,
        }


class GatewayStats:
    def __init__(self) -> None:
        # the process's series too: the health port serves this registry (vmpulse/cli.py)
        self.registry = stage_registry()
        r = self.registry
        self.connections = Gauge(
            "vmpulse_gateway_connections", "Authenticated Socket.IO connections", registry=r
        )
        self.connections_refused = Counter(
            "vmpulse_gateway_connections_refused",
            "Connections refused, by reason",
            ["reason"],
            registry=r,
        )
        self.events_in = Counter(
            "vmpulse_gateway_events_in", "Records read from events.outbound", registry=r
        )
        self.events_skipped = Counter(
            "vmpulse_gateway_events_skipped", "Outbound records that could not be used", registry=r
        )
        self.events_out = Counter(
            "vmpulse_gateway_events_out", "Events written to sockets (one per socket)", registry=r
        )
        self.deliveries_failed = Counter(
            "vmpulse_gateway_deliveries_failed",
            "Deliveries that did not reach a socket (emit raised, socket closing)",
            registry=r,
        )
        self.consumer_lag = Gauge(
            "vmpulse_gateway_consumer_lag", "Records of events.outbound not read yet", registry=r
        )
        self.resume_hits = Counter(
            "vmpulse_gateway_resume_hits", "Resumes served from the replay log", registry=r
        )
        self.resume_misses = Counter(
            "vmpulse_gateway_resume_misses", "Resumes answered with resync", registry=r
        )
        self.replayed = Counter(
            "vmpulse_gateway_replayed_events", "Events re-sent by resumes", registry=r
        )
        self.client_events_limited = Counter(
            "vmpulse_gateway_client_events_rate_limited",
            "Client events refused by the per-user rate limit",
            registry=r,
        )
        self.client_events_refused = Counter(
            "vmpulse_gateway_client_events_refused",
            "Client packets refused: reserved or unknown event names, malformed packets",
            ["reason"],
            registry=r,
        )
        # The send path (issue 10.5): sockets dropped for not reading, sessions
        # that never connected a namespace, resumes refused by the per-user rate.
        self.slow_consumers = Counter(
            "vmpulse_gateway_slow_consumers",
            "Sockets disconnected because their unsent bytes passed the bound",
            registry=r,
        )
        self.connect_timeouts = Counter(
            "vmpulse_gateway_connect_timeouts",
            "Engine.IO sessions closed for not connecting a Socket.IO namespace in time",
            registry=r,
        )
        self.resumes_limited = Counter(
            "vmpulse_gateway_resumes_rate_limited",
            "Reconnects with lastPosition answered with resync by the per-user resume rate",
            registry=r,
        )
        self.replay_chunks = Counter(
            "vmpulse_gateway_replay_chunks",
            "Holds of the outbound consumer's lock by resumes (each replays a bounded chunk)",
            registry=r,
        )
        self.reads = Counter(
            "vmpulse_gateway_reads",
            "History and admin SQL requests by outcome (ok, rejected, busy, rate_limited, "
            "timeout, failed)",
            ["kind", "outcome"],
            registry=r,
        )
        self.per_user: dict[str, UserDeliveries] = {}

    def watch_lag(self, lag: Callable[[], int]) -> None:
        """Read the consumer's lag whenever the registry is collected, wherever it is served."""
        self.consumer_lag.set_function(lag)

    def delivered(self, user_id: str | None, sockets: int) -> None:
        self.events_out.inc(sockets)
        if user_id is not None:
            self.per_user.setdefault(user_id, UserDeliveries()).delivered += sockets

    def failed(self, user_id: str | None, sockets: int) -> None:
        self.deliveries_failed.inc(sockets)
        if user_id is not None:
            self.per_user.setdefault(user_id, UserDeliveries()).failed += sockets

    def forget_user(self, user_id: str) -> None:
        self.per_user.pop(user_id, None)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
