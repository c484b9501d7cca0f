"""Browser identity: verify the JWT a client presents, and issue one for the CLI.

Pure functions, no I/O, so every refusal path is unit-tested without a server.
The token only says *who* the caller is; what they may do (admin or not, which
VMs) comes from the directory, because a token outlives a role change and the
directory is the one source of truth (DESIGN.md, Identity and trust).

Verification rules (a :class:`TokenPolicy` built once from Settings):
- the algorithms are pinned by the server (HS256 by default); ``none`` is refused
  even when asked for, since it would let anyone mint tokens;
- HS* tokens are checked with the shared secret, RS*/ES*/PS* tokens with the
  configured public key; the key is chosen by the server's list, so a token
  cannot get its HMAC checked against the (public) RSA key (algorithm confusion);
- ``exp`` is required, since a token without it is valid forever and outlives
  every logout (``VMPULSE_JWT_ALLOW_NO_EXP=1`` accepts such tokens of a legacy
  issuer); ``nbf`` is checked when present; ``iat`` must be a number;
- ``iss`` and ``aud`` are required and checked when configured;
- the user id comes from ``sub`` or, for tokens minted by the legacy Node.js
  backend, ``userId``; it must be a short non-empty string.
Every failure becomes :class:`~gateway.exceptions.TokenInvalid` with the one
message the contract allows, so a client cannot probe why a token failed.

The development key is published in the source: with it anyone can mint a
token for any user, admins included, and compute every user's room name. A
gateway refuses it beyond loopback (:func:`check_listen_key`).
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jwt

from gateway.exceptions import TokenInvalid, TokenMissing
from infra.config import ConfigError, Secret, Settings
from infra.network import is_loopback_host

__all__ = [
    "DEFAULT_ALGORITHMS",
    "MAX_TOKEN_LENGTH",
    "MAX_USER_ID_LENGTH",
    "Identity",
    "TokenPolicy",
    "VerifiedTokens",
    "bearer_token",
    "check_listen_key",
    "handshake_token",
    "issue_token",
    "verify_token",
]

DEFAULT_ALGORITHMS: tuple[str, ...] = ("HS256",)
# A JWT this long is not one we issued; refusing early bounds the work an
# anonymous client can make us do.
MAX_TOKEN_LENGTH = 8192
MAX_USER_ID_LENGTH = 256


@dataclasses.dataclass(frozen=True, slots=True)
class Identity:
    """Who a verified token says the caller is (not what they may do)."""

    user_id: str
    claims_admin: bool
    expires_at: int | None


@dataclasses.dataclass(frozen=True, slots=True)
class TokenPolicy:
    """What a valid browser token looks like: algorithms, keys, issuer, audience."""

    secret: Secret | str = dataclasses.field(repr=False)
    algorithms: tuple[str, ...] = DEFAULT_ALGORITHMS
    public_key: str | None = None
    issuer: str | None = None
    audience: str | None = None
    leeway_s: float = 0.0
    require_exp: bool = True

    def __post_init__(self) -> None:
        _check_algorithms(self.algorithms)
        if self.public_key is None and any(not a.startswith("HS") for a in self.algorithms):
            raise ValueError("asymmetric JWT algorithms need a public key")

    @classmethod
    def from_settings(cls, settings: Settings) -> TokenPolicy:
        """Reads the public key file (PEM) once, at start-up."""
        key = settings.tokens.public_key.read_text() if settings.tokens.public_key else None
        return cls(
            secret=settings.tokens.secret,
            algorithms=settings.tokens.algorithms,
            public_key=key,
            issuer=settings.tokens.issuer,
            audience=settings.tokens.audience,
            require_exp=not settings.tokens.allow_no_exp,
        )

    def key_for(self, algorithm: str) -> str:
        return _key(self.secret) if algorithm.startswith("HS") else (self.public_key or "")


def _key(secret: Secret | str) -> str:
    return secret.reveal() if isinstance(secret, Secret) else secret


def _check_algorithms(algorithms: Sequence[str]) -> list[str]:
    algs = list(algorithms)
    if not algs or any(a.lower() == "none" for a in algs):
        raise ValueError("JWT algorithms must be a non-empty list without 'none'")
    return algs


def verify_token(
    token: str | None,
    secret: Secret | str | TokenPolicy,
    *,
    algorithms: Sequence[str] = DEFAULT_ALGORITHMS,
    leeway_s: float = 0.0,
    require_exp: bool = True,
) -> Identity:
    """Verify ``token`` and return the identity it carries.

    ``secret`` is either a full :class:`TokenPolicy` or, for HS* only, the
    shared secret. Raises TokenMissing for an absent or empty token and
    TokenInvalid for anything else that is wrong with it.
    """
    policy = (
        secret
        if isinstance(secret, TokenPolicy)
        else TokenPolicy(secret, tuple(algorithms), leeway_s=leeway_s, require_exp=require_exp)
    )
    if token is None or (isinstance(token, str) and not token.strip()):
        raise TokenMissing()
    if not isinstance(token, str) or len(token) > MAX_TOKEN_LENGTH:
        raise TokenInvalid()
    text = token.strip()
    try:
        alg = jwt.get_unverified_header(text).get("alg")
        if not isinstance(alg, str) or alg not in policy.algorithms:
            raise TokenInvalid()
        required: list[str] = ["exp"] if policy.require_exp else []
        if policy.issuer is not None:
            required.append("iss")
        if policy.audience is not None:
            required.append("aud")
        claims: dict[str, Any] = jwt.decode(
            text,
            policy.key_for(alg),
            algorithms=[alg],
            leeway=policy.leeway_s,
            issuer=policy.issuer,
            audience=policy.audience,
            options={
                "verify_signature": True,
                "verify_exp": True,
                "verify_nbf": True,
                "verify_iss": policy.issuer is not None,
                "verify_aud": policy.audience is not None,
                "require": required,
            },
        )
    except (jwt.PyJWTError, ValueError, TypeError, KeyError):
        # ValueError/TypeError: PyJWT lets a few malformed inputs through as those.
        raise TokenInvalid() from None
    user_id = _user_id(claims)
    exp = claims.get("exp")
    return Identity(
        user_id=user_id,
        claims_admin=claims.get("role") == "admin" or claims.get("admin") is True,
        expires_at=int(exp) if isinstance(exp, int | float) else None,
    )


class VerifiedTokens:
    """Tokens that passed :func:`verify_token` lately, so re-presenting one costs a lookup.

    A browser presents the same token on every reconnect, and a gateway that
    restarts sees every client reconnect at once: the signature check and JSON
    decoding were the largest part of a handshake. A token is the exact key
    (nothing derived from it is trusted), a hit is valid only until the
    token's ``exp`` (with the policy's leeway; ``nbf`` was met when it was
    checked, and time only moves on), and the table holds at most
    ``max_entries``, the least recently used leaving first. Failures are not
    kept: they are cheap to find again and must not crowd out good tokens.
    What a token may do is never cached here: that comes from the directory.
    """

    def __init__(
        self,
        policy: TokenPolicy,
        *,
        max_entries: int = 4096,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if max_entries <= 0:
            raise ValueError("max_entries must be positive")
        self._policy = policy
        self._max = max_entries
        self._clock = clock
        self._entries: collections.OrderedDict[str, Identity] = collections.OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def verify(self, token: str | None) -> Identity:
        """:func:`verify_token` under the policy, answered from the table when it can be."""
        if isinstance(token, str):
            hit = self._entries.get(token)
            if hit is not None:
                if hit.expires_at is None or self._clock() < hit.expires_at + self._policy.leeway_s:
                    self._entries.move_to_end(token)
                    return hit
                del self._entries[token]
        identity = verify_token(token, self._policy)
        if isinstance(token, str):
            self._entries[token] = identity
            if len(self._entries) > self._max:
                self._entries.popitem(last=False)
        return identity


def _user_id(claims: Mapping[str, Any]) -> str:
    for name in ("sub", "userId"):
        value = claims.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise TokenInvalid()
        text = str(value)
        if not text or len(text) > MAX_USER_ID_LENGTH or not text.isprintable():
            raise TokenInvalid()
        return text
    raise TokenInvalid()


def issue_token(
    secret: Secret | str,
    user_id: str,
    *,
    admin: bool = False,
    ttl: dt.timedelta = dt.timedelta(hours=12),
    now: dt.datetime | None = None,
    algorithm: str = DEFAULT_ALGORITHMS[0],
    issuer: str | None = None,
    audience: str | None = None,
) -> str:
    """Mint a token for ``vmpulse token`` and for tests.

    ``admin`` only sets an informational ``role`` claim; the gateway takes the
    role from the directory, so a token cannot make anyone an admin.
    """
    _check_algorithms([algorithm])
    if not user_id or len(user_id) > MAX_USER_ID_LENGTH:
        raise ValueError("user_id must be a non-empty string of at most 256 characters")
    if ttl <= dt.timedelta(0):
        raise ValueError("ttl must be positive")
    issued = now if now is not None else dt.datetime.now(dt.UTC)
    claims: dict[str, Any] = {
        "sub": user_id,
        "role": "admin" if admin else "user",
        "iat": int(issued.timestamp()),
        "nbf": int(issued.timestamp()),
        "exp": int((issued + ttl).timestamp()),
        "jti": uuid.uuid4().hex,
    }
    if issuer is not None:
        claims["iss"] = issuer
    if audience is not None:
        claims["aud"] = audience
    return jwt.encode(claims, _key(secret), algorithm=algorithm)


def check_listen_key(settings: Settings) -> None:
    """Raise ConfigError when the gateway would listen beyond loopback with the development key."""
    if settings.tokens.secret_is_dev and not is_loopback_host(settings.gateway.host):
        raise ConfigError(
            f"refusing to serve on {settings.gateway.host!r} with the development JWT key, "
            "which anyone can read in the source: set VMPULSE_JWT_SECRET (at least 32 random "
            "bytes, e.g. python3 -c 'import secrets; print(secrets.token_hex(32))') or listen "
            "on 127.0.0.1 (VMPULSE_GATEWAY_ADDR)"
        )


def bearer_token(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <jwt>`` header, or None."""
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return value.strip() or None


def handshake_token(auth: object, environ: Mapping[str, Any]) -> str | None:
    """The token of a Socket.IO handshake: ``auth.token`` first, then the header.

    ``auth`` is whatever the client sent, so it is checked, never trusted.
    """
    if isinstance(auth, Mapping):
        token = auth.get("token")
        if isinstance(token, str) and token.strip():
            # Browsers' socket.io clients often send "Bearer <jwt>" here too.
            return bearer_token(token) or token.strip()
    header = environ.get("HTTP_AUTHORIZATION")
    return bearer_token(header) if isinstance(header, str) else None
