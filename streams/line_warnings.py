"""The worker's log lines about agent lines it refused or did not recognise, a few per VM.

Each refused line is one DLQ record and each unrecognized message one stored
``agent_events`` row, both counted: that is the account. The warning is for an
operator reading the log, so it goes through a per-VM budget
(:class:`infra.log_budget.WarningBudget`): a guest that writes garbage as
fast as it can costs a handful of log lines, not one per line. A DLQ record is
decoded only for a warning that is actually written.
"""

from __future__ import annotations

import logging

import msgspec

from infra.log_budget import WarningBudget, suppressed_note
from schemas.dlq import decode_dlq_record
from streams.pipeline import BatchResult

__all__ = ["LineWarnings"]

_DETAIL_SHOWN = 300


class LineWarnings:
    """Writes the warnings of one batch's result, within each VM's budget."""

    def __init__(self, logger: logging.Logger, budget: WarningBudget | None = None) -> None:
        self._log = logger
        self.budget = budget or WarningBudget()

    def report(self, result: BatchResult, now: float) -> None:
        for vm_id, payload in result.rejects:
            held = self.budget.take(vm_id, now)
            if held is None:
                continue
            try:
                record = decode_dlq_record(payload)
            except (msgspec.DecodeError, msgspec.ValidationError):  # our own record: a bug
                self._log.warning("VM %s: a line was refused%s", vm_id, suppressed_note(held))
                continue
            origin = record.origin
            self._log.warning(
                "VM %s: line refused (%s) at %s[%s]@%s: %s%s",
                vm_id,
                record.reason,
                origin.topic,
                origin.partition,
                origin.offset,
                record.detail[:_DETAIL_SHOWN],
                suppressed_note(held),
            )
        for event in result.unrecognized:
            held = self.budget.take(event.vm_id, now)
            if held is not None:
                self._log.warning(
                    "VM %s: message of unrecognized type %r, stored as an unrecognized agent "
                    "event%s",
                    event.vm_id,
                    event.message_type[:80],
                    suppressed_note(held),
                )
