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
JSON passes: rejecting it is the worker's job, with its own reason code.
"""

from __future__ import annotations

import functools
import re
from typing import Final

import msgspec

__all__ = ["all_claims_own", "claimed_other_vm"]

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


def all_claims_own(block: bytes, vm_id: str) -> bool:
    """True if every ``"vmId"`` / ``"vm_id"`` key in ``block`` (many lines) names ``vm_id``.

    Three substring scans over a whole read, instead of several per line. Both
    keys begin with ``"vm``, and each exact own claim (``"vmId":"<own>"``,
    ``"vm_id":"<own>"``) holds exactly one ``"vm``, at its start (a UUID has no
    ``v`` or ``m``): so when there are as many ``"vm`` as own claims, every key
    starts an own claim. A backslash is searched with ``memchr``; only a block
    that has one pays for the search of a ``\\u`` escape (which could spell a key
    or an id the scans do not see). False only means "check each line"
    (:func:`claimed_other_vm`), never "reject".
    """
    _, own_d1, own_d2 = _own_claims(vm_id)
    if b"\\" in block and b"\\u" in block:
        return False
    return block.count(b'"vm') == block.count(own_d1) + block.count(own_d2)
