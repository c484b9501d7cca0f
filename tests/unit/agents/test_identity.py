"""The bridge's check that a line does not claim another VM."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from agents.identity import OwnClaims, claimed_other_vm
from agents.simulator.dialect2_lines import handshake_line
from agents.simulator.fleet import system_metrics_line

A = "0b5c4a52-1f7e-4c3e-9d57-3f4c2a1b9e01"
B = "11111111-2222-4333-8444-555555555555"
OWN_A = OwnClaims(A)


def test_own_lines_pass_in_both_dialects() -> None:
    assert claimed_other_vm(system_metrics_line(A, 1.78e9, random.Random(1)), A) is None
    assert claimed_other_vm(handshake_line(A, 1.78e9), A) is None
    assert claimed_other_vm(b'{"type":"keep_alive","sequence_number":1}', A) is None
    assert claimed_other_vm(A.upper().join([b'{"vmId":"'.decode(), '"}']).encode(), A) is None


def test_a_claim_of_another_vm_is_found() -> None:
    assert claimed_other_vm(system_metrics_line(B, 1.78e9, random.Random(1)), A) == B
    assert claimed_other_vm(handshake_line(B, 1.78e9), A) == B
    assert claimed_other_vm(b'{"type":"x","vm_id" : "' + B.encode() + b'"}', A) == B


def test_escapes_cannot_hide_a_claim() -> None:
    escaped_key = b'{"type":"system_metrics","vm\\u0049d":"' + B.encode() + b'"}'
    assert claimed_other_vm(escaped_key, A) == B
    escaped_id = b'{"vmId":"\\u0031' + B.encode()[1:] + b'"}'
    assert claimed_other_vm(escaped_id, A) == B


def test_nested_fields_and_non_json_are_left_to_the_worker() -> None:
    nested = b'{"type":"response","data":{"vm_id":"' + B.encode() + b'"},"vm_id":"' + A.encode()
    assert claimed_other_vm(nested + b'"}', A) is None
    assert claimed_other_vm(b'{"vmId":"' + B.encode() + b'", broken', A) is None
    assert claimed_other_vm(b'{"vmId": null}', A) is None


def test_block_check_passes_only_blocks_whose_every_claim_is_own() -> None:
    own = [system_metrics_line(A, 1.78e9 + i, random.Random(i)) for i in range(5)]
    assert OWN_A.every_claim_own(b"\n".join([*own, b'{"type":"keep_alive"}']))
    forged = system_metrics_line(B, 1.78e9, random.Random(1))
    assert not OWN_A.every_claim_own(b"\n".join([*own, forged]))
    assert not OWN_A.every_claim_own(b'{"vmId": "' + A.encode() + b'"}')  # spaced: check per line
    assert not OWN_A.every_claim_own(b'{"vm\\u0049d":"x"}')


def test_block_check_is_conservative_about_other_vm_keys() -> None:
    # Another key starting with "vm makes the block go line by line; the line still passes.
    line = b'{"type":"system_metrics","vmId":"' + A.encode() + b'","vmName":"web-1"}'
    assert not OWN_A.every_claim_own(line)
    assert claimed_other_vm(line, A) is None
    # A backslash alone (a Windows path) keeps the fast path; a \u escape does not.
    path = b'{"vmId":"' + A.encode() + b'","cmd":"C:\\\\Program Files\\\\agent.exe"}'
    assert OWN_A.every_claim_own(path)
    assert not OWN_A.every_claim_own(path.replace(b"agent", b"\\u0061gent"))


def _every_key_starts_an_own_claim(block: bytes, vm_id: str) -> bool:
    """The block check's rule, spelled out: the reference model."""
    if b"\\" in block and b"\\u" in block:
        return False
    own = (b'"vmId":"' + vm_id.encode() + b'"', b'"vm_id":"' + vm_id.encode() + b'"')
    at = block.find(b'"vm')
    while at >= 0:
        if not block.startswith(own, at):
            return False
        at = block.find(b'"vm', at + 1)
    return True


@settings(max_examples=500)
@given(
    st.lists(
        st.sampled_from(
            [
                b'"vmId":"' + A.encode() + b'"',
                b'"vm_id":"' + A.encode() + b'"',
                b'"vmId":"',
                b'"vm_id":"',
                b'"vm',
                b"Id",
                b"_id",
                b'":"',
                b'"',
                b":",
                b" ",
                A.encode(),
                B.encode(),
                A[:8].encode(),
                b"x",
                b"\\",
                b"u",
                b"\n",
                b"{",
                b"}",
                b",",
                b"v",
                b"m",
                b"-",
            ]
        ),
        max_size=40,
    ).map(b"".join)
)
def test_block_check_answers_as_its_rule(block: bytes) -> None:
    """Whatever the block, the compiled search answers as the rule spelled out."""
    assert OWN_A.every_claim_own(block) == _every_key_starts_an_own_claim(block, A)


def test_a_vm_id_is_matched_as_text_not_as_a_pattern() -> None:
    dotted = OwnClaims("a.b")  # no real VM id has a dot; a regex one would match any byte
    assert dotted.every_claim_own(b'{"vmId":"a.b"}')
    assert not dotted.every_claim_own(b'{"vmId":"axb"}')
