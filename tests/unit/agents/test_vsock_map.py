"""vsock CIDs to VMs from libvirt domain XML (pure).

The AF_VSOCK socket itself cannot be exercised end to end on this machine: it
is itself a Firecracker guest (local CID 3) whose kernel has no vsock_loopback,
so a connect to CID 1 times out and to the host (CID 2) is reset. The listener
binding and the identification step are tested in
tests/integration/agents/test_transports.py; the mapping is tested here.
"""

from __future__ import annotations

from agents.vsock import cid_map

A = "0B5C4A52-1F7E-4C3E-9D57-3F4C2A1B9E01"
B = "11111111-2222-4333-8444-555555555555"


def domain(uuid: str, vsock: str = "") -> str:
    return f"""<domain type='kvm'><name>vm</name><uuid>{uuid}</uuid>
      <devices><disk type='file'/>{vsock}</devices></domain>"""


def test_cids_map_to_lowercase_uuids() -> None:
    xmls = [
        domain(A, "<vsock model='virtio'><cid auto='no' address='42'/></vsock>"),
        domain(B, "<vsock model='virtio'><cid auto='yes' address='7'/></vsock>"),
    ]
    assert cid_map(xmls) == {42: A.lower(), 7: B}


def test_domains_without_a_usable_cid_are_skipped() -> None:
    xmls = [
        domain(A),  # no vsock device
        domain(B, "<vsock model='virtio'><cid auto='yes'/></vsock>"),  # not started yet
        domain(B, "<vsock><cid address='2'/></vsock>"),  # reserved (host)
        "<domain><uuid></uuid></domain>",
        "not xml at all",
    ]
    assert cid_map(xmls) == {}


def test_a_cid_claimed_twice_maps_to_nobody() -> None:
    xmls = [
        domain(A, "<vsock><cid address='9'/></vsock>"),
        domain(B, "<vsock><cid address='9'/></vsock>"),
        domain(B, "<vsock><cid address='10'/></vsock>"),
    ]
    assert cid_map(xmls) == {10: B}


def test_vsock_outside_devices_is_not_trusted() -> None:
    xml = f"<domain><uuid>{B}</uuid><metadata><vsock><cid address='5'/></vsock></metadata></domain>"
    assert cid_map([xml]) == {}
