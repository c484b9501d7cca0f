"""Load generator for the bridge benchmark: serves one unix socket per VM, as QEMU would.

``python -m tests.bench.bridge_load LINES_FILE SOCKET_DIR`` reads ``vm<TAB>line``
rows, listens on a socket per VM in a staging directory, prints ``bound``,
and on a line on stdin moves every socket to ``SOCKET_DIR/<vm>.socket`` at
once (so the clock can start when they appear). It writes all of a VM's lines
to the bridge as soon as it connects, then keeps the connection open. A separate process, so
the bridge being measured does not share its event loop with the load.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections import defaultdict
from pathlib import Path


def _load(lines_file: Path) -> dict[str, bytes]:
    per_vm: dict[str, list[bytes]] = defaultdict(list)
    with open(lines_file, "rb") as f:
        for row in f:
            vm, _, line = row.partition(b"\t")
            per_vm[vm.decode()].append(line)
    return {vm: b"".join(lines) for vm, lines in per_vm.items()}


async def main(payload: dict[str, bytes], socket_dir: Path, staging: Path) -> None:
    servers = []
    for vm, data in payload.items():

        async def serve(
            reader: asyncio.StreamReader, writer: asyncio.StreamWriter, data: bytes = data
        ) -> None:
            writer.write(data)
            await writer.drain()
            await reader.read()

        staged = staging / f"{vm}.socket"
        servers.append(await asyncio.start_unix_server(serve, path=os.fspath(staged)))
    # Bound out of the bridge's sight; on "go" every socket appears at once.
    print("bound", flush=True)
    await asyncio.to_thread(sys.stdin.readline)
    for vm in payload:
        os.rename(staging / f"{vm}.socket", socket_dir / f"{vm}.socket")
    print("ready", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    target = Path(sys.argv[2])
    staging = target.parent / "staging"
    target.mkdir(parents=True, exist_ok=True)
    staging.mkdir(parents=True, exist_ok=True)
    asyncio.run(main(_load(Path(sys.argv[1])), target, staging))
