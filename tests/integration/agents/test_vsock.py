"""vsock: the CID map read from libvirt (test driver), identification, and the listener.

What cannot run here: a vsock connection end to end. This machine is itself a
Firecracker guest (local CID 3) without vsock_loopback, so connecting to CID 1
times out and to the host (CID 2) is reset; nothing can connect to our
listener. The test therefore binds the real AF_VSOCK listener and drives the
identification step with the peer address the kernel would report.
"""

from __future__ import annotations

import random
from typing import Any

import libvirt
import pytest

from agents.admission import Slots
from agents.listeners import Listener, Refused, vsock_socket
from agents.stream import ConnectionInfo, Stream
from agents.vsock import LibvirtCidMap, vsock_identify

VM = "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee"
XML = f"""<domain type='test'><name>vsock-test</name><uuid>{VM}</uuid><memory>1024</memory>
<os><type>hvm</type></os>
<devices><vsock model='virtio'><cid auto='no' address='42'/></vsock></devices></domain>"""


class _PeerWriter:
    def __init__(self, peer: Any) -> None:
        self.peer = peer

    def get_extra_info(self, name: str) -> Any:
        return self.peer if name == "peername" else None


async def test_cids_come_from_libvirt_domain_xml_and_unknown_cids_are_refused() -> None:
    conn = libvirt.open("test:///default")
    dom = conn.defineXML(XML)
    try:
        cids = LibvirtCidMap.from_uri("test:///default", refresh_s=0.0)
        identify = vsock_identify(cids.lookup)
        info = await identify(None, _PeerWriter((42, 1234)))  # type: ignore[arg-type]
        assert (info.vm_id, info.transport, info.peer) == (VM, "vsock", b"cid:42")
        for peer in [(43, 1234), ("10.0.0.1", 1234), None]:
            with pytest.raises(Refused) as err:
                await identify(None, _PeerWriter(peer))  # type: ignore[arg-type]
            assert err.value.reason == "unknown_cid"
    finally:
        dom.undefine()
        conn.close()


async def test_the_vsock_listener_binds_and_stops() -> None:
    served: list[ConnectionInfo] = []

    async def handler(stream: Stream, info: ConnectionInfo) -> None:
        served.append(info)

    async def lookup(cid: int) -> str | None:
        return None

    port = random.randint(20_000, 60_000)
    listener = Listener(
        "vsock",
        vsock_identify(lookup),
        handler,
        slots=Slots(10),
        on_refused=lambda *_: None,
        sock=vsock_socket(port),
    )
    await listener.start()
    assert listener.address[1] == port
    await listener.stop()
    assert served == []
