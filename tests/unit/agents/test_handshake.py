"""The signed TCP hello: who may speak as a VM, and what is refused."""

from __future__ import annotations

import json

import pytest

from agents.handshake import HandshakeError, NonceCache, make_hello, verify_hello, vm_key

SECRET = "master-secret-for-tests"
VM = "0b5c4a52-1f7e-4c3e-9d57-3f4c2a1b9e01"
OTHER = "11111111-2222-4333-8444-555555555555"
NOW = 1_780_000_000


def verify(line: bytes, cache: NonceCache | None = None, now: float = NOW) -> str:
    return verify_hello(line.rstrip(b"\n"), SECRET, now=now, nonces=cache or NonceCache())


def reason(line: bytes, **kw: object) -> str:
    with pytest.raises(HandshakeError) as err:
        verify(line, **kw)  # type: ignore[arg-type]
    return err.value.reason


def test_a_valid_hello_proves_its_vm() -> None:
    assert verify(make_hello(SECRET, VM, ts=NOW)) == VM


def test_per_vm_keys_differ_and_do_not_reveal_the_master() -> None:
    assert vm_key(SECRET, VM) != vm_key(SECRET, OTHER)
    assert SECRET.encode() not in vm_key(SECRET, VM)


def test_wrong_secret_and_swapped_vm_are_refused() -> None:
    assert reason(make_hello("another-secret", VM, ts=NOW)) == "handshake_bad_signature"
    body = json.loads(make_hello(SECRET, VM, ts=NOW))
    body["vm_id"] = OTHER  # keep VM's signature, claim OTHER
    assert reason(json.dumps(body).encode()) == "handshake_bad_signature"


def test_unsigned_malformed_and_missing_hellos_are_refused() -> None:
    body = json.loads(make_hello(SECRET, VM, ts=NOW))
    del body["sig"]
    assert reason(json.dumps(body).encode()) == "handshake_unsigned"
    assert reason(b"not json") == "handshake_malformed"
    assert reason(b'{"type":"system_metrics","vmId":"x"}') == "handshake_missing"
    assert reason(b'{"type":"hello","vm_id":"NOT-A-UUID","ts":1,"nonce":"00","sig":"x"}') == (
        "handshake_malformed"
    )


def test_stale_and_replayed_hellos_are_refused() -> None:
    assert reason(make_hello(SECRET, VM, ts=NOW - 3600)) == "handshake_stale"
    assert reason(make_hello(SECRET, VM, ts=NOW + 3600)) == "handshake_stale"
    cache = NonceCache()
    line = make_hello(SECRET, VM, ts=NOW, nonce="ab" * 16)
    assert verify(line, cache) == VM
    assert reason(line, cache=cache) == "handshake_replay"


def test_nonce_cache_forgets_after_the_window_and_is_bounded() -> None:
    cache = NonceCache(window_s=10, max_size=3)
    assert cache.check_and_add("a", 0) and not cache.check_and_add("a", 1)
    assert cache.check_and_add("a", 100)  # long expired: its ts would be stale anyway
    for n in "bcdef":
        cache.check_and_add(n, 100)
    assert len(cache._seen) <= 3
