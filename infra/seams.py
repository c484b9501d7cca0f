"""Checking a reach into a library's private API against the version it was written for.

The worker reaches into Faust (streams/faust_internals.py) and the gateway into
python-socketio and engine.io (gateway/socketio_internals.py). Each lists its seams;
both ask the same question of each one, answered here once: is the attribute still
there, with the signature it was read in?
"""

from __future__ import annotations

import inspect

__all__ = ["signature_problem"]


def signature_problem(owner: type, name: str, signature: str, reason: str) -> str | None:
    """What changed about ``owner.name`` since it had ``signature``; None when nothing did."""
    where = f"{owner.__module__}.{owner.__qualname__}.{name}"
    found = getattr(owner, name, None)
    if found is None:
        return f"{where} is gone ({reason})"
    now = str(inspect.signature(found))
    if now != signature:
        return f"{where}{now} was {signature} ({reason})"
    return None
