"""``<data dir>/up.json``: where a running ``vmpulse up`` is, for the tools that talk to it.

``vmpulse up`` writes it once its gateway listens and removes it when it stops;
``vmpulse query``, ``vmpulse dlq``, ``vmpulse emit`` and ``vmpulse directory``
read it when the settings do not name a broker. One typed reader, so a missing,
unreadable or malformed file is simply "no running up" everywhere, never a
traceback. ``pid`` lets ``vmpulse query`` tell the ``up`` that has the embedded
store open (store/owner.py) from a file a killed one left behind.
"""

from __future__ import annotations

from pathlib import Path

import msgspec

__all__ = [
    "UP_INFO_FILE",
    "UpInfo",
    "read_up_info",
    "remove_up_info",
    "up_info_path",
    "write_up_info",
]

UP_INFO_FILE = "up.json"


class UpInfo(msgspec.Struct, kw_only=True, frozen=True):
    """What ``vmpulse up`` records; the store URL without its password."""

    kafka_bootstrap: str | None = None
    gateway_url: str | None = None
    clickhouse_url: str = ""
    socket_dir: str = ""
    topic_prefix: str = ""
    pid: int | None = None


_decoder = msgspec.json.Decoder(UpInfo)


def up_info_path(data_dir: Path) -> Path:
    return data_dir / UP_INFO_FILE


def read_up_info(data_dir: Path) -> UpInfo | None:
    """The running ``vmpulse up``'s record, or None when there is none (or it is unreadable)."""
    try:
        return _decoder.decode(up_info_path(data_dir).read_bytes())
    except (OSError, msgspec.DecodeError):
        return None


def write_up_info(data_dir: Path, info: UpInfo) -> Path:
    path = up_info_path(data_dir)
    path.write_bytes(msgspec.json.format(msgspec.json.encode(info), indent=2) + b"\n")
    return path


def remove_up_info(data_dir: Path, pid: int) -> None:
    """Remove up.json if the ``up`` of process ``pid`` wrote it (another may have since)."""
    info = read_up_info(data_dir)
    if info is not None and info.pid == pid:
        up_info_path(data_dir).unlink(missing_ok=True)
