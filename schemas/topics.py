"""Kafka topic names (DESIGN.md, Topics).

Every stage derives names from one :class:`Topics` built with the configured
prefix, so a test run or a tenant can live beside another on one cluster.
"""

from __future__ import annotations

import dataclasses
from typing import Final

__all__ = ["MAX_BATCH_BYTES", "Topics"]

MAX_BATCH_BYTES: Final = 16 * 1024 * 1024
"""Largest record batch a vmpulse topic takes (its ``max.message.bytes``) and a producer
sends: above the 4 MiB agent line (``VMPULSE_AGENT_MAX_LINE``) with its headers, and
above a DLQ record that carries such a line. Kafka's default is about 1 MiB, so a
cluster left at its default would refuse a long valid line; every topic vmpulse
creates carries this limit itself (infra/kafka_io.py ``topic_configs``)."""


@dataclasses.dataclass(frozen=True, slots=True)
class Topics:
    prefix: str = ""

    def _name(self, base: str) -> str:
        return f"{self.prefix}{base}"

    @property
    def agent_raw(self) -> str:
        return self._name("agent.raw")

    @property
    def hypervisor_events(self) -> str:
        return self._name("hypervisor.events")

    @property
    def control_events(self) -> str:
        return self._name("control.events")

    @property
    def directory(self) -> str:
        return self._name("directory")

    @property
    def agent_dlq(self) -> str:
        return self._name("agent.dlq")

    @property
    def events_outbound(self) -> str:
        return self._name("events.outbound")

    @property
    def worker_state(self) -> str:
        """Presence and alert state per VM, compacted (streams/state_log.py)."""
        return self._name("worker.state")

    def all(self) -> tuple[str, ...]:
        return (
            self.agent_raw,
            self.hypervisor_events,
            self.control_events,
            self.directory,
            self.agent_dlq,
            self.events_outbound,
            self.worker_state,
        )

    def compacted(self) -> frozenset[str]:
        return frozenset({self.directory, self.worker_state})
