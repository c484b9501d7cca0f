"""The bridge's cheap check that a line does not claim another VM: pure, no I/O.

The connection decides the VM (DESIGN.md, Identity and trust); a line that
names a different VM in its top-level ``vmId`` (dialect 1) or ``vm_id``
(dialect 2) is a forgery or a misconfigured agent, and goes to the DLQ as
``vm_mismatch`` instead of into another VM's series. The worker checks again;
this check only keeps forged lines out of ``agent.raw``.

Cost matters (every line passes here), so the fast path is a regex over the
bytes: when every ``"vmId": "..."`` / ``"vm_id": "..."`` it finds names the
connection's VM, the line passes without being parsed (unless it holds a ``\\u`` escape,
which could spell the key or the id in a way the regex does not see). Only a line with some
other value is decoded (top-level fields only, with msgspec) to tell a real
claim from a nested field that happens to share the name. A line that is not
JSON passes: rejecting it is the worker's job, with its own reason code. Before
any of that, a whole read is checked at once (:class:`OwnClaims`): only a read that
fails it goes line by line.
"""

from __future__ import annotations

import functools
import re
from typing import Final

import msgspec

__all__ = ["OwnClaims", "claimed_other_vm"]

_KEY_RE: Final = re.compile(rb'"(?:vmId|vm_id)"')
_CLAIM_RE: Final = re.compile(rb'"(?:vmId|vm_id)"\s*:\s*"([^"\\]{0,100})"')


class _Claims(msgspec.Struct):
    vmId: str | None = None
    vm_id: str | None = None


_decoder: Final = msgspec.json.Decoder(_Claims)


@functools.lru_cache(maxsize=65536)
def _own_claims(vm_id: str) -> tuple[bytes, bytes, bytes]:
    own = vm_id.encode()
    return own, b'"vmId":"' + own + b'"', b'"vm_id":"' + own + b'"'


def claimed_other_vm(line: bytes, vm_id: str) -> str | None:
    """The other VM id ``line`` claims at its top level, or None if it claims none or ``vm_id``."""
    own, own_d1, own_d2 = _own_claims(vm_id)
    if b"\\u" not in line:  # a \u escape could spell a key or id the regexes do not see
        keys = line.count(b'"vmId"') + line.count(b'"vm_id"')
        if keys == 0 or (keys == 1 and (own_d1 in line or own_d2 in line)):
            return None  # the common case, in C-speed substring searches
        claims_seen = _CLAIM_RE.findall(line)
        if all(m.lower() == own for m in claims_seen) and len(claims_seen) == len(
            _KEY_RE.findall(line)
        ):
            return None
    try:
        claims = _decoder.decode(line)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    for claim in (claims.vmId, claims.vm_id):
        if claim is not None and claim.lower() != vm_id:
            return claim
    return None


class OwnClaims:
    """The one VM a connection's lines may claim, with the block check compiled for it.

    Built once per connection. :meth:`every_claim_own` passes a whole read (many
    lines) when every ``"vmId"`` / ``"vm_id"`` key in it starts an exact own claim
    (``"vmId":"<own>"``, ``"vm_id":"<own>"``). Both keys begin with ``"vm``, so one
    search for a ``"vm`` that starts neither own claim decides it. Until session 13
    this was three substring counts (``"vm``, then each own claim) with equal totals,
    the same rule but for claims overlapping in text no JSON has; CPython's count of a
    three-byte needle was about a fifth of the bridge's loop, and ``re``'s search with
    its literal prefix takes 0.54 us a line where the counts took 0.93.
    """

    __slots__ = ("_other", "vm_id")

    def __init__(self, vm_id: str) -> None:
        self.vm_id = vm_id
        own = re.escape(vm_id.encode())
        self._other = re.compile(rb'"vm(?!Id":"' + own + rb'")(?!_id":"' + own + rb'")')

    def every_claim_own(self, block: bytes) -> bool:
        """True if every ``"vmId"`` / ``"vm_id"`` key in ``block`` names this VM.

        A backslash is searched with ``memchr``; only a block that has one pays for
        the search of a ``\\u`` escape (which could spell a key or an id the search
        does not see). False only means "check each line" (:func:`claimed_other_vm`),
        never "reject".
        """
        if b"\\" in block and b"\\u" in block:
            return False
        return self._other.search(block) is None
