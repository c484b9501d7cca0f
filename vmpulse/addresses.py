"""Whether a listen address stays on this machine: pure, except for name resolution.

Development keys are for loopback only (DESIGN.md, Identity and trust): a process
that listens beyond it refuses them. Any stage that listens asks here.
"""

from __future__ import annotations

import ipaddress
import socket

__all__ = ["is_loopback_host"]


def is_loopback_host(host: str) -> bool:
    """True if every address ``host`` (a literal or a name) stands for is loopback.

    The wildcard addresses (``0.0.0.0``, ``::``, empty) listen on every interface and
    are not loopback; a name counts only if all it resolves to is (``localhost``).
    """
    host = host.strip("[]")
    if not host:
        return False
    try:
        return _loopback(ipaddress.ip_address(host.split("%", 1)[0]))
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except OSError:
        return False  # cannot tell: treat as reachable from the network
    addresses = {str(info[4][0]).split("%", 1)[0] for info in infos}
    return bool(addresses) and all(_loopback(ipaddress.ip_address(a)) for a in addresses)


def _loopback(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback
