"""Which VM a vsock peer is: its CID, as libvirt's domain XML assigns it.

A guest cannot choose its CID (the hypervisor sets it, ``<devices><vsock><cid
address='N'/>``), so the CID identifies the VM the way a socket file name does.
:func:`cid_map` is pure (domain XML strings in, ``{cid: vm uuid}`` out) and is
fed from libvirt by :class:`LibvirtCidMap`, which re-reads the domains when an
unknown CID connects (a VM just defined), at most once per ``refresh_s``.
Unknown CIDs are refused.
"""

from __future__ import annotations

import asyncio
import logging
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable
from typing import Any

from agents.listeners import Identify, Refused
from agents.stream import ConnectionInfo

__all__ = ["LibvirtCidMap", "cid_map", "vsock_identify"]

log = logging.getLogger(__name__)


def cid_map(domain_xmls: Iterable[str]) -> dict[int, str]:
    """``{cid: vm uuid}`` from libvirt domain XMLs; domains without a fixed vsock CID are skipped.

    A CID claimed by two domains maps to neither: refusing both is safer than
    attributing one VM's data to the other.
    """
    found: dict[int, str] = {}
    clashes: set[int] = set()
    for text in domain_xmls:
        try:
            root = ET.fromstring(text)
        except ET.ParseError:
            log.warning("skipping a domain XML that does not parse")
            continue
        uuid_el = root.find("uuid")
        if uuid_el is None or not (uuid_el.text or "").strip():
            continue
        vm_id = (uuid_el.text or "").strip().lower()
        for cid_el in root.findall("./devices/vsock/cid"):
            address = cid_el.get("address")
            if address is None or not address.strip().isdigit():
                continue  # auto='yes' without an address yet
            cid = int(address)
            if cid < 3:
                continue  # 0-2 are reserved (hypervisor, local, host)
            if cid in found and found[cid] != vm_id:
                clashes.add(cid)
            found[cid] = vm_id
    for cid in clashes:
        log.error("vsock CID %d is claimed by more than one domain; refusing it", cid)
        del found[cid]
    return found


class LibvirtCidMap:
    """A CID map kept from libvirt's domain XMLs, refreshed on a miss (rate-limited)."""

    def __init__(self, load_xmls: Callable[[], list[str]], *, refresh_s: float = 5.0) -> None:
        self._load = load_xmls
        self._refresh_s = refresh_s
        self._map: dict[int, str] = {}
        self._loaded_at = float("-inf")

    @classmethod
    def from_uri(cls, uri: str, **kwargs: Any) -> LibvirtCidMap:
        def load() -> list[str]:
            import libvirt

            conn = libvirt.openReadOnly(uri)
            try:
                return [d.XMLDesc(0) for d in conn.listAllDomains()]
            finally:
                conn.close()

        return cls(load, **kwargs)

    async def lookup(self, cid: int) -> str | None:
        if cid not in self._map and time.monotonic() - self._loaded_at >= self._refresh_s:
            self._loaded_at = time.monotonic()
            try:
                xmls = await asyncio.to_thread(self._load)
            except Exception as exc:
                log.error("cannot read domain XMLs for the vsock CID map: %r", exc)
            else:
                self._map = cid_map(xmls)
        return self._map.get(cid)


def vsock_identify(lookup: Callable[[int], Any]) -> Identify:
    """Identification for vsock: the peer CID must belong to a known domain."""

    async def identify(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> ConnectionInfo:
        peer = writer.get_extra_info("peername")
        if not isinstance(peer, tuple) or not peer or not isinstance(peer[0], int):
            raise Refused("unknown_cid", f"no vsock peer CID ({peer!r})")
        cid = peer[0]
        vm_id = await lookup(cid)
        if vm_id is None:
            raise Refused("unknown_cid", f"vsock CID {cid} belongs to no known domain")
        return ConnectionInfo(vm_id=vm_id, transport="vsock", peer=f"cid:{cid}".encode())

    return identify
