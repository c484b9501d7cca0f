"""Token policies with public keys, issuer and audience: every refusal, no server."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from gateway.auth import TokenPolicy, VerifiedTokens, issue_token, verify_token
from gateway.exceptions import TokenInvalid
from infra.config import Secret, Settings

SECRET = Secret("unit-test-secret-" + "0123456789abcdef" * 4)


def _pems(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> tuple[str, str]:
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


RSA_PRIVATE, RSA_PUBLIC = _pems(rsa.generate_private_key(public_exponent=65537, key_size=2048))
EC_PRIVATE, EC_PUBLIC = _pems(ec.generate_private_key(ec.SECP256R1()))


def _hs256(secret: str, claims: dict[str, object]) -> str:
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps(claims).encode())
    sig = hmac.new(secret.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(sig)}"


def test_mixed_policy_checks_each_family_with_its_own_key() -> None:
    policy = TokenPolicy(SECRET, ("HS256", "RS256", "ES256"), public_key=RSA_PUBLIC)
    assert verify_token(issue_token(SECRET, "a"), policy).user_id == "a"
    rs = issue_token(RSA_PRIVATE, "b", algorithm="RS256")
    assert verify_token(rs, policy).user_id == "b"
    # HMAC keyed with the public key (algorithm confusion) is refused.
    with pytest.raises(TokenInvalid):
        verify_token(_hs256(RSA_PUBLIC, {"sub": "mallory"}), policy)
    # An ES256 token cannot verify against the RSA key.
    with pytest.raises(TokenInvalid):
        verify_token(issue_token(EC_PRIVATE, "c", algorithm="ES256"), policy)


def test_issuer_and_audience_are_required_when_configured() -> None:
    policy = TokenPolicy(
        SECRET, ("ES256",), public_key=EC_PUBLIC, issuer="idp", audience=("vmpulse")
    )

    def es(issuer: str | None = None, audience: str | None = None) -> str:
        return issue_token(EC_PRIVATE, "alice", algorithm="ES256", issuer=issuer, audience=audience)

    assert verify_token(es(issuer="idp", audience="vmpulse"), policy).user_id == "alice"
    for token in (
        es(issuer="idp"),
        es(audience="vmpulse"),
        es(issuer="other", audience="vmpulse"),
        es(issuer="idp", audience="other"),
        issue_token(SECRET, "alice", issuer="idp", audience="vmpulse"),
        # PyJWT's key annotation leaves out None, the only key alg "none" accepts.
        jwt.encode(
            {"sub": "alice", "iss": "idp", "aud": "vmpulse"},
            None,  # type: ignore[arg-type]
            algorithm="none",
        ),
    ):
        with pytest.raises(TokenInvalid):
            verify_token(token, policy)


def test_policy_refuses_none_and_keyless_asymmetric() -> None:
    with pytest.raises(ValueError):
        TokenPolicy(SECRET, ("none",))
    with pytest.raises(ValueError):
        TokenPolicy(SECRET, ("RS256",))


def test_policy_from_settings_reads_the_key_file(tmp_path: Path) -> None:
    path = tmp_path / "key.pem"
    path.write_text(RSA_PUBLIC)
    settings = Settings.from_env(
        {
            "VMPULSE_JWT_ALGORITHMS": "RS256, HS256",
            "VMPULSE_JWT_PUBLIC_KEY": str(path),
            "VMPULSE_JWT_ISSUER": "idp",
            "VMPULSE_JWT_AUDIENCE": "vmpulse",
            "VMPULSE_JWT_SECRET": SECRET.reveal(),
        }
    )
    policy = TokenPolicy.from_settings(settings)
    assert policy.algorithms == ("RS256", "HS256") and policy.public_key == RSA_PUBLIC
    token = issue_token(RSA_PRIVATE, "z", algorithm="RS256", issuer="idp", audience="vmpulse")
    assert verify_token(token, policy).user_id == "z"
    assert "unit-test-secret" not in repr(policy)


class _Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_verified_tokens_answer_from_the_table_until_exp() -> None:
    policy = TokenPolicy(SECRET)
    good = issue_token(SECRET, "alice")
    clock = _Clock(time.time())
    tokens = VerifiedTokens(policy, clock=clock)
    first = tokens.verify(good)
    assert first.user_id == "alice" and len(tokens) == 1
    assert tokens.verify(good) is first  # a hit: no second signature check
    # Past the token's exp (by the table's clock) the hit is dropped and the token
    # is checked again (still valid by PyJWT's real clock: a new Identity).
    assert first.expires_at is not None
    clock.now = first.expires_at + 1
    again = tokens.verify(good)
    assert again == first and again is not first


def test_verified_tokens_keep_no_failure_and_stay_bounded() -> None:
    policy = TokenPolicy(SECRET)
    tokens = VerifiedTokens(policy, max_entries=2)
    with pytest.raises(TokenInvalid):
        tokens.verify(issue_token(Secret("another-secret-" + "x" * 40), "alice"))
    with pytest.raises(TokenInvalid):
        tokens.verify("a.b.c")
    assert len(tokens) == 0
    a, b, c = (issue_token(SECRET, u) for u in ("a", "b", "c"))
    first_a = tokens.verify(a)
    tokens.verify(b)
    tokens.verify(c)  # the least recently used (a) leaves
    assert len(tokens) == 2
    assert tokens.verify(a) is not first_a
    with pytest.raises(ValueError):
        VerifiedTokens(policy, max_entries=0)
