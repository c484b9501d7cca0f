"""`vmpulse dlq`: the latest rejected agent lines and how many were refused for each reason.

Reads ``agent.dlq`` straight from the broker (no consumer group, nothing
committed), so looking never disturbs anything. The broker and topic prefix
come from the settings, or from the ``up.json`` a running ``vmpulse up``
wrote. Reading and counting are :mod:`infra.dlq_reader`'s (the gateway's
admin overview reads the same way); this module adds where to look and the
text.
"""

from __future__ import annotations

from pathlib import Path

from infra.dlq_reader import Summary
from vmpulse.up_info import read_up_info

__all__ = ["locate_broker", "render"]


def locate_broker(bootstrap: str | None, prefix: str, data_dir: Path) -> tuple[str | None, str]:
    """Bootstrap servers and topic prefix: the settings first, else the running `vmpulse up`."""
    if bootstrap:
        return bootstrap, prefix
    info = read_up_info(data_dir)
    if info is None:
        return None, prefix
    return info.kafka_bootstrap, prefix or info.topic_prefix


def render(summary: Summary) -> str:
    import datetime as dt

    lines = []
    for e in summary.latest:
        when = dt.datetime.fromtimestamp(e.timestamp_ms / 1000, dt.UTC).strftime("%H:%M:%S.%f")
        detail = str(e.record.get("detail", "")).replace("\n", " ")[:80]
        raw = str(e.record.get("raw", ""))[:40]
        lines.append(f"{when[:-3]}  {e.key:<36}  {e.record.get('reason', '?'):<18}  {detail}")
        lines.append(f"{'':14}raw ({e.record.get('raw_encoding', '?')}): {raw!r}")
    lines.append(f"counts by reason ({summary.scanned} records scanned):")
    width = max((len(r) for r in summary.counts), default=0)
    lines += [f"  {reason:<{width}}  {count}" for reason, count in summary.counts.items()]
    return "\n".join(lines)
