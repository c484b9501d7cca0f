"""UnixStream over a real unix socket, on asyncio's loop and on uvloop (as `vmpulse bridge` runs).

Pushed reads go to the sink in the order they arrive; what the sink gives back
pauses reading until the reader took it, so nothing overtakes it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
import uvloop

from agents.exceptions import StreamError
from agents.stream import UnixStream

Runner = Callable[[Coroutine[Any, Any, None]], None]
LOOPS: dict[str, Runner] = {"asyncio": asyncio.run, "uvloop": uvloop.run}


_servers: list[asyncio.Server] = []  # uvloop closes a listener whose Server is collected


async def _pair(path: Path) -> tuple[UnixStream, asyncio.StreamWriter]:
    accepted: asyncio.Future[asyncio.StreamWriter] = asyncio.get_running_loop().create_future()

    async def on_client(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        accepted.set_result(w)

    _servers.append(await asyncio.start_unix_server(on_client, path))
    stream = await UnixStream.connect(path)
    return stream, await accepted


async def _line_by_line(server: asyncio.StreamWriter, lines: list[bytes]) -> None:
    for line in lines:
        server.write(line)
        await server.drain()


@pytest.mark.parametrize("loop", LOOPS)
def test_pushed_reads_keep_their_order_around_what_the_sink_gives_back(
    loop: str, short_tmp: Path
) -> None:
    async def main() -> None:
        stream, server = await _pair(short_tmp / "vm.sock")
        seen: list[bytes] = []
        taken = asyncio.Event()

        def sink(data: bytes) -> object | None:
            seen.append(data)
            taken.set()
            return ("held", data) if data.startswith(b"hold") else None

        stream.push(sink)
        await _line_by_line(server, [b"one\n"])
        await taken.wait()
        server.write(b"hold me\n")
        # what the sink gave back comes out of next(); reading waits for it
        assert await stream.next() == ("held", b"hold me\n")
        server.write(b"three\n")
        server.close()
        # the last read goes to the sink, then the end of the stream
        assert await stream.next() == b""
        assert b"".join(seen) == b"one\nhold me\nthree\n"
        await stream.close()

    LOOPS[loop](main())


@pytest.mark.parametrize("loop", LOOPS)
def test_pulled_reads_end_with_empty_bytes(loop: str, short_tmp: Path) -> None:
    async def main() -> None:
        stream, server = await _pair(short_tmp / "vm.sock")
        server.write(b"x" * 100)
        server.close()
        got = b""
        while chunk := await stream.read(30):
            assert len(chunk) <= 30
            got += chunk
        assert got == b"x" * 100
        await stream.close()
        with pytest.raises(StreamError):
            await stream.write(b"late")

    LOOPS[loop](main())


@pytest.mark.parametrize("loop", LOOPS)
def test_a_failing_sink_surfaces_in_the_reader(loop: str, short_tmp: Path) -> None:
    async def main() -> None:
        stream, server = await _pair(short_tmp / "vm.sock")

        def sink(data: bytes) -> object | None:
            raise ValueError("sink bug")

        stream.push(sink)
        server.write(b"line\n")
        with pytest.raises(ValueError, match="sink bug"):
            await stream.next()
        await stream.close()

    LOOPS[loop](main())


@pytest.mark.parametrize("loop", LOOPS)
def test_a_held_off_stream_reads_nothing_until_released(loop: str, short_tmp: Path) -> None:
    """While held off (a bridge whose Kafka budget is full), a pushed stream leaves its
    data in the socket although its reader waits for it; released, the data comes."""

    async def main() -> None:
        stream, server = await _pair(short_tmp / "vm.sock")
        probe, probe_server = await _pair(short_tmp / "probe.sock")
        seen: list[bytes] = []
        stream.push(lambda data: seen.append(data))
        reader = asyncio.create_task(stream.next())  # waiting for a read, as the bridge's
        await asyncio.sleep(0)
        stream.hold_off(True)
        server.write(b"held\n")
        await server.drain()
        # A read on another socket, written after it, comes through: the loop has
        # polled its sockets since, and the held one was readable all along.
        probe_server.write(b"ping")
        assert await probe.read(10) == b"ping"
        assert seen == []
        stream.hold_off(False)
        server.close()
        assert await reader == b""
        assert seen == [b"held\n"]
        await stream.close()
        await probe.close()

    LOOPS[loop](main())
