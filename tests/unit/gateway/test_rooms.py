"""Room names: keyed namespaces, admin, vm rooms, and client vmId validation."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from gateway.rooms import namespace_function, parse_vm_id, user_namespace
from infra.config import Secret
from schemas.events import ADMIN_ROOM, vm_room


def test_namespace_is_keyed_hash_prefix() -> None:
    expected = hmac.new(b"k", b"alice", hashlib.sha256).hexdigest()[:20]
    assert user_namespace(Secret("k"), "alice") == f"user_{expected}"
    assert user_namespace("k", "alice") == f"user_{expected}"


def test_namespace_depends_on_secret_and_user() -> None:
    assert user_namespace("k1", "alice") != user_namespace("k2", "alice")
    assert user_namespace("k1", "alice") != user_namespace("k1", "bob")
    assert "alice" not in user_namespace("k1", "alice")


def test_namespace_function_binds_secret() -> None:
    ns = namespace_function(Secret("k"))
    assert ns("alice") == user_namespace("k", "alice")


def test_fixed_rooms() -> None:
    assert ADMIN_ROOM == "admin"
    assert vm_room("vm-1") == "vm:vm-1"


@pytest.mark.parametrize("value", ["vm-1", "550e8400-e29b-41d4-a716-446655440000", "x" * 128])
def test_valid_vm_ids(value: str) -> None:
    assert parse_vm_id(value) == value


@pytest.mark.parametrize("value", [None, 1, "", " vm", "vm\n", "x" * 129, ["vm"], {"id": 1}])
def test_invalid_vm_ids(value: object) -> None:
    assert parse_vm_id(value) is None
