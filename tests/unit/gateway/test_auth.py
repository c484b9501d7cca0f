"""JWT verification and issuing: every refusal path, without a server."""

from __future__ import annotations

import datetime as dt

import jwt
import pytest

from gateway.auth import (
    TokenPolicy,
    bearer_token,
    check_listen_key,
    handshake_token,
    issue_token,
    verify_token,
)
from gateway.exceptions import (
    AUTH_FAILED,
    TOKEN_REQUIRED,
    USER_NOT_FOUND,
    TokenInvalid,
    TokenMissing,
    UnknownUser,
)
from infra.config import ConfigError, Secret, Settings

SECRET = Secret("unit-test-secret-" + "0123456789abcdef" * 4)
NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def _encode(claims: dict[str, object], key: str = SECRET.reveal(), alg: str = "HS256") -> str:
    """A token with ``claims``, valid for an hour unless ``claims`` say otherwise."""
    exp = int((dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).timestamp())
    return jwt.encode({"exp": exp, **claims}, key, algorithm=alg)


def test_issued_token_round_trips() -> None:
    token = issue_token(SECRET, "alice", admin=True, ttl=dt.timedelta(minutes=5))
    identity = verify_token(token, SECRET)
    assert identity.user_id == "alice"
    assert identity.claims_admin is True
    assert identity.expires_at is not None


def test_plain_string_secret_is_accepted() -> None:
    token = issue_token(SECRET.reveal(), "bob")
    assert verify_token(token, SECRET).user_id == "bob"


def test_user_id_from_legacy_user_id_claim() -> None:
    assert verify_token(_encode({"userId": "carol"}), SECRET).user_id == "carol"
    assert verify_token(_encode({"userId": 42}), SECRET).user_id == "42"


def test_sub_wins_over_user_id() -> None:
    assert verify_token(_encode({"sub": "dave", "userId": "eve"}), SECRET).user_id == "dave"


@pytest.mark.parametrize("token", [None, "", "   "])
def test_missing_token(token: str | None) -> None:
    with pytest.raises(TokenMissing) as info:
        verify_token(token, SECRET)
    assert str(info.value) == TOKEN_REQUIRED


def test_bad_signature() -> None:
    token = issue_token(Secret("another-secret-" + "0123456789abcdef" * 4), "alice")
    with pytest.raises(TokenInvalid) as info:
        verify_token(token, SECRET)
    assert str(info.value) == AUTH_FAILED


def test_expired_token() -> None:
    token = issue_token(SECRET, "alice", ttl=dt.timedelta(seconds=10), now=NOW)
    with pytest.raises(TokenInvalid):
        verify_token(token, SECRET)


def test_a_token_without_exp_is_refused_unless_allowed() -> None:
    forever = jwt.encode({"sub": "alice"}, SECRET.reveal(), algorithm="HS256")
    with pytest.raises(TokenInvalid) as info:
        verify_token(forever, SECRET)
    assert str(info.value) == AUTH_FAILED
    with pytest.raises(TokenInvalid):
        verify_token(forever, TokenPolicy(SECRET))
    assert verify_token(forever, SECRET, require_exp=False).expires_at is None
    allowed = TokenPolicy.from_settings(
        Settings.from_env({"VMPULSE_JWT_SECRET": SECRET.reveal(), "VMPULSE_JWT_ALLOW_NO_EXP": "1"})
    )
    assert verify_token(forever, allowed).user_id == "alice"
    # Allowing tokens without exp does not stop checking the exp of those that have one.
    with pytest.raises(TokenInvalid):
        verify_token(_encode({"sub": "alice", "exp": 1}), allowed)


def test_issued_tokens_always_carry_exp() -> None:
    claims = jwt.decode(issue_token(SECRET, "alice"), options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 12 * 3600


def test_not_yet_valid_token() -> None:
    future = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    token = issue_token(SECRET, "alice", now=future)
    with pytest.raises(TokenInvalid):
        verify_token(token, SECRET)


def test_alg_none_is_refused() -> None:
    token = jwt.encode({"sub": "alice"}, "", algorithm="none")
    with pytest.raises(TokenInvalid):
        verify_token(token, SECRET)
    with pytest.raises(ValueError):
        verify_token(token, SECRET, algorithms=["none"])
    with pytest.raises(ValueError):
        issue_token(SECRET, "alice", algorithm="none")


def test_other_hmac_algorithm_is_refused_unless_configured() -> None:
    token = _encode({"sub": "alice"}, alg="HS512")
    with pytest.raises(TokenInvalid):
        verify_token(token, SECRET)
    assert verify_token(token, SECRET, algorithms=["HS512"]).user_id == "alice"


@pytest.mark.parametrize(
    "claims",
    [
        {},
        {"sub": ""},
        {"userId": True},
        {"userId": ["alice"]},
        {"userId": "x" * 300},
        {"userId": "a\nb"},
    ],
)
def test_token_without_usable_user_id(claims: dict[str, object]) -> None:
    with pytest.raises(TokenInvalid):
        verify_token(_encode(claims), SECRET)


@pytest.mark.parametrize("token", ["garbage", "a.b.c", "x" * 10_000])
def test_malformed_token(token: str) -> None:
    with pytest.raises(TokenInvalid):
        verify_token(token, SECRET)


def test_non_string_token_is_invalid() -> None:
    with pytest.raises(TokenInvalid):
        verify_token(123, SECRET)  # type: ignore[arg-type]


def test_refusal_messages_are_fixed() -> None:
    assert str(UnknownUser()) == USER_NOT_FOUND
    assert USER_NOT_FOUND == "User not found"
    assert TOKEN_REQUIRED == "Authentication token required"
    assert AUTH_FAILED == "Authentication failed"


def test_issue_token_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError):
        issue_token(SECRET, "")
    with pytest.raises(ValueError):
        issue_token(SECRET, "alice", ttl=dt.timedelta(0))


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("Bearer abc", "abc"),
        ("bearer   abc  ", "abc"),
        ("Basic abc", None),
        ("Bearer", None),
        ("", None),
        (None, None),
    ],
)
def test_bearer_token(header: str | None, expected: str | None) -> None:
    assert bearer_token(header) == expected


def test_handshake_prefers_auth_token_then_header() -> None:
    environ = {"HTTP_AUTHORIZATION": "Bearer from-header"}
    assert handshake_token({"token": "from-auth"}, environ) == "from-auth"
    assert handshake_token({"token": "Bearer from-auth"}, environ) == "from-auth"
    assert handshake_token(None, environ) == "from-header"
    assert handshake_token({"token": 5}, environ) == "from-header"
    assert handshake_token("junk", {}) is None


@pytest.mark.parametrize("addr", ["0.0.0.0:8080", "[::]:8080", "192.0.2.10:8080"])
def test_the_development_key_never_listens_beyond_loopback(addr: str) -> None:
    settings = Settings.from_env({"VMPULSE_GATEWAY_ADDR": addr})
    with pytest.raises(ConfigError, match="VMPULSE_JWT_SECRET"):
        check_listen_key(settings)
    check_listen_key(
        Settings.from_env({"VMPULSE_GATEWAY_ADDR": addr, "VMPULSE_JWT_SECRET": "k" * 32})
    )


@pytest.mark.parametrize("addr", ["127.0.0.1:8080", "127.8.9.10:0", "[::1]:8080", "localhost:80"])
def test_the_development_key_is_fine_on_loopback(addr: str) -> None:
    check_listen_key(Settings.from_env({"VMPULSE_GATEWAY_ADDR": addr}))
