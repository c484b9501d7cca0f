"""Who may connect and what they see, over real sockets against the real broker.

Every refusal is checked with the exact message the contract documents, and
every "sees nothing" is checked by publishing the forbidden event *before* an
allowed sentinel on the same partition: once the sentinel is there, the
forbidden event would have been too.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import pytest
import socketio
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from gateway.auth import issue_token
from infra.config import Secret, Settings
from schemas.directory import User
from schemas.events import OutboundEvent
from schemas.topics import Topics
from tests.integration.gateway.harness import (
    DIRECTORY,
    Client,
    connect,
    publish,
    put_directory,
    running,
    short_token,
    token,
    until,
)

pytestmark = pytest.mark.integration


async def _refusal(url: str, opened: list[Client], **kwargs: Any) -> Any:
    with pytest.raises(socketio.exceptions.ConnectionError):
        await connect(url, into=opened, **kwargs)
    return opened[-1].refusal


def _pem_private(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _pem_public(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


async def test_hs256_refusals_use_the_documented_messages(
    settings: Settings, topics_ready: Topics, opened: list[Client]
) -> None:
    await put_directory(settings, *DIRECTORY)
    async with running(settings) as gw:
        wrong_key = issue_token(Secret("not-the-gateway-secret-" + "x" * 40), "root")
        # PyJWT's key annotation leaves out None, the only key alg "none" accepts.
        alg_none = jwt.encode({"sub": "root"}, key=None, algorithm="none")  # type: ignore[arg-type]
        past = dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)
        expired = issue_token(settings.tokens.secret, "root", ttl=dt.timedelta(hours=1), now=past)
        future = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
        not_yet = issue_token(settings.tokens.secret, "root", now=future)
        cases = {
            "no token": ({}, "Authentication token required"),
            "wrong key": ({"token": wrong_key}, "Authentication failed"),
            "alg none": ({"token": alg_none}, "Authentication failed"),
            "expired": ({"token": expired}, "Authentication failed"),
            "not yet valid": ({"token": not_yet}, "Authentication failed"),
            "garbage": ({"token": "a.b.c"}, "Authentication failed"),
            # A token without exp would never expire: refused (VMPULSE_JWT_ALLOW_NO_EXP).
            "no exp": (
                {"token": jwt.encode({"sub": "root"}, settings.tokens.secret.reveal(), "HS256")},
                "Authentication failed",
            ),
            "unknown user": ({"token": token(settings, "mallory")}, "User not found"),
        }
        for case, (auth, message) in cases.items():
            refusal = await _refusal(gw.url, opened, auth=auth)
            assert refusal == {"message": message}, case
        # The same token as a header is accepted: the refusals above were about the tokens.
        ok = await connect(
            gw.url, headers={"Authorization": f"Bearer {token(settings, 'root')}"}, into=opened
        )
        assert (await ok.wait_for("connected"))["user"]["id"] == "root"


@pytest.mark.parametrize("algorithm", ["RS256", "ES256"])
async def test_asymmetric_tokens_with_issuer_and_audience(
    settings: Settings,
    topics_ready: Topics,
    opened: list[Client],
    short_tmp: Path,
    algorithm: str,
) -> None:
    def new_key() -> rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey:
        if algorithm == "RS256":
            return rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return ec.generate_private_key(ec.SECP256R1())

    key, other = new_key(), new_key()
    public_path = short_tmp / "jwt.pub"
    public_path.write_bytes(_pem_public(key))
    settings = settings.replace(
        tokens={
            "algorithms": (algorithm,),
            "public_key": public_path,
            "issuer": "https://idp.example",
            "audience": "vmpulse",
        }
    )
    await put_directory(settings, *DIRECTORY)

    def signed(signer: Any = key, *, aud: str = "vmpulse", iss: str = "https://idp.example") -> str:
        return issue_token(
            _pem_private(signer).decode(), "alice", algorithm=algorithm, issuer=iss, audience=aud
        )

    async with running(settings) as gw:
        good = await connect(gw.url, {"token": signed()}, into=opened)
        assert (await good.wait_for("connected"))["user"]["id"] == "alice"
        # A legacy token with userId instead of sub is accepted as well.
        legacy = jwt.encode(
            {"userId": "bob", "iss": "https://idp.example", "aud": "vmpulse", "exp": _in_an_hour()},
            _pem_private(key),
            algorithm=algorithm,
        )
        bob = await connect(gw.url, {"token": legacy}, into=opened)
        assert (await bob.wait_for("connected"))["user"]["id"] == "bob"

        public_pem = _pem_public(key).decode()
        refused = {
            "wrong key": signed(other),
            "wrong audience": signed(aud="someone-else"),
            "wrong issuer": signed(iss="https://evil.example"),
            "no audience": issue_token(
                _pem_private(key).decode(),
                "alice",
                algorithm=algorithm,
                issuer="https://idp.example",
            ),
            "hs256 with the shared secret": issue_token(
                settings.tokens.secret, "alice", issuer="https://idp.example", audience="vmpulse"
            ),
            # Algorithm confusion: an HMAC keyed with the public key must not pass.
            "hs256 keyed with the public key": _hmac_token(public_pem),
            # PyJWT's key annotation leaves out None, the only key alg "none" accepts.
            "alg none": jwt.encode(
                {"sub": "alice", "aud": "vmpulse", "iss": "https://idp.example"},
                key=None,  # type: ignore[arg-type]
                algorithm="none",
            ),
        }
        for case, tok in refused.items():
            refusal = await _refusal(gw.url, opened, auth={"token": tok})
            assert refusal == {"message": "Authentication failed"}, case


def _in_an_hour() -> int:
    return int((dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).timestamp())


def _hmac_token(secret: str) -> str:
    """HS256 by hand: PyJWT itself refuses to use a PEM key as an HMAC secret."""
    import base64
    import hashlib
    import hmac
    import json

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(
        json.dumps({"sub": "alice", "aud": "vmpulse", "iss": "https://idp.example"}).encode()
    )
    sig = hmac.new(secret.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(sig)}"


async def test_subscribing_to_another_users_vm_is_refused_and_delivers_nothing(
    settings: Settings, topics_ready: Topics, opened: list[Client]
) -> None:
    await put_directory(settings, *DIRECTORY)
    async with running(settings) as gw:
        alice = await connect(gw.url, {"token": token(settings, "alice")}, into=opened)
        ns = (await alice.wait_for("connected"))["namespace"]
        denied = await alice.sio.call("subscribe", {"vmId": "vm-b"}, timeout=5)
        assert denied == {"ok": False, "error": "Access denied"}
        missing = await alice.sio.call("subscribe", {"vmId": "vm-nope"}, timeout=5)
        assert missing == denied  # no way to tell "not yours" from "does not exist"
        recent = await alice.sio.call("metrics:recent", {"vmId": "vm-b", "count": 5}, timeout=5)
        assert recent["ok"] is False

        await publish(
            settings,
            OutboundEvent(
                resource="metrics", action="update", data={"vmId": "vm-b"}, rooms=["vm:vm-b"]
            ),
            OutboundEvent(resource="vms", action="update", data={"id": "vm-b"}, users=["bob"]),
            OutboundEvent(resource="alerts", action="create", admins=True),
            OutboundEvent(resource="vms", action="update", data={"sentinel": 1}, users=["alice"]),
        )
        await alice.wait_for(f"{ns}:vms:update")
        assert alice.names() == ["connected", f"{ns}:vms:update"]


async def test_socket_is_disconnected_when_its_token_expires(
    settings: Settings, topics_ready: Topics, opened: list[Client]
) -> None:
    await put_directory(settings, *DIRECTORY)
    async with running(settings) as gw:
        brief = await connect(gw.url, {"token": short_token(settings, "alice", 2)}, into=opened)
        lasting = await connect(gw.url, {"token": token(settings, "alice")}, into=opened)
        await brief.wait_for("connected")
        await lasting.wait_for("connected")
        assert await brief.wait_for("session:ended", timeout=8) == {"reason": "Token expired"}
        await until(lambda: brief.disconnected.is_set())
        assert lasting.sio.connected and gw.namespace.connected_sids == 1


async def test_deleted_user_is_disconnected_and_demoted_admin_leaves_admin_room(
    settings: Settings, topics_ready: Topics, opened: list[Client]
) -> None:
    await put_directory(settings, *DIRECTORY, User(id="ops", name="Ops", role="admin"))
    async with running(settings) as gw:
        alice = await connect(gw.url, {"token": token(settings, "alice")}, into=opened)
        ops = await connect(gw.url, {"token": token(settings, "ops")}, into=opened)
        await alice.wait_for("connected")
        await ops.wait_for("connected")
        ops_sid = ops.sio.get_sid("/")
        assert "admin" in gw.sio.rooms(ops_sid)

        await put_directory(settings, User(id="ops", name="Ops"), delete=["user:alice"])
        assert await alice.wait_for("session:ended") == {"reason": "User not found"}
        await until(lambda: alice.disconnected.is_set())
        await until(lambda: "admin" not in gw.sio.rooms(ops_sid))
        assert ops.sio.connected
        # And a new connection of the deleted user is refused.
        with pytest.raises(socketio.exceptions.ConnectionError):
            await connect(gw.url, {"token": token(settings, "alice")}, into=opened)
        assert opened[-1].refusal == {"message": "User not found"}


async def test_user_who_leaves_the_department_is_unsubscribed(
    settings: Settings, topics_ready: Topics, opened: list[Client]
) -> None:
    await put_directory(settings, *DIRECTORY, User(id="carol", department="ops"))
    async with running(settings) as gw:
        carol = await connect(gw.url, {"token": token(settings, "carol")}, into=opened)
        await carol.wait_for("connected")
        assert (await carol.sio.call("subscribe", {"vmId": "vm-b"}, timeout=5))["ok"] is True
        sid = carol.sio.get_sid("/")
        await put_directory(settings, User(id="carol", department="eng"))
        await until(lambda: "vm:vm-b" not in gw.sio.rooms(sid))
        assert gw.namespace.subscriptions_of(sid) == frozenset()
        await publish(
            settings,
            OutboundEvent(
                resource="metrics", action="update", data={"vmId": "vm-b"}, rooms=["vm:vm-b"]
            ),
            OutboundEvent(resource="vms", action="update", users=["carol"]),
        )
        await carol.wait(lambda: len(carol.events) == 2)
        assert "metricsUpdate" not in carol.names()


async def test_a_role_claim_in_the_token_makes_no_one_an_admin(
    settings: Settings, topics_ready: Topics, opened: list[Client]
) -> None:
    """`role: admin` in a validly signed token is information; the directory decides."""
    await put_directory(settings, *DIRECTORY)
    claimed = token(settings, "alice", admin=True)
    assert jwt.decode(claimed, options={"verify_signature": False})["role"] == "admin"
    async with running(settings) as gw:
        alice = await connect(gw.url, {"token": claimed}, into=opened)
        await alice.wait_for("connected")
        assert "admin" not in gw.sio.rooms(alice.sio.get_sid("/"))
        ack = await alice.sio.call("subscribe", {"vmId": "vm-b"}, timeout=10)  # bob's VM
        assert ack == {"ok": False, "error": "Access denied"}
        async with aiohttp.ClientSession() as http:
            headers = {"Authorization": f"Bearer {claimed}"}
            async with http.get(f"{gw.url}/debug/connections", headers=headers) as resp:
                assert resp.status == 403
            async with http.post(
                f"{gw.url}/api/query", headers=headers, json={"sql": "SELECT 1"}
            ) as resp:
                assert resp.status == 403
