"""Whether a listen address keeps a listener on this machine.

Development keys are for loopback only (DESIGN.md, Identity and trust): a stage
that would listen beyond loopback with one refuses to start. Loopback means
every address the host name stands for is in 127.0.0.0/8 or is ``::1``; a
wildcard (``""``, ``0.0.0.0``, ``::``), any other address, or a name that does
not resolve is not loopback, so a doubt always ends in the refusal.
"""

from __future__ import annotations

import ipaddress
import socket

__all__ = ["is_loopback_host"]


def is_loopback_host(host: str) -> bool:
    """True when binding ``host`` cannot accept connections from another machine."""
    name = host.strip().strip("[]")
    if not name:
        return False  # an empty host binds every interface
    try:
        return _loopback(ipaddress.ip_address(name.split("%", 1)[0]))
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(name, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return False
    addresses = {str(info[4][0]).split("%", 1)[0] for info in infos}
    return bool(addresses) and all(_loopback(ipaddress.ip_address(a)) for a in addresses)


def _loopback(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    # ::ffff:127.0.0.1 is loopback too (an IPv4-mapped address on a dual-stack socket)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback
