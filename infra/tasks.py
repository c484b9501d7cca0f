"""Stopping background tasks the same way in every stage."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

__all__ = ["cancel_and_wait"]

log = logging.getLogger(__name__)


async def cancel_and_wait(task: asyncio.Task[Any] | None, what: str) -> None:
    """Cancel ``task`` and wait until it ended.

    An error the task had already ended with is logged, not raised: whoever
    stops a stage still has resources (consumers, sockets) to close after it.
    """
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        try:
            await task
        except Exception:
            log.exception("%s had stopped with an error", what)
