"""Guest agent messages, decoded once at the edge: both dialects in one tagged union.

One module-level msgspec decoder knows all seventeen message types (PROTOCOL.md)
by their ``type`` tag, so a line is parsed, type checked, range checked and
capped in a single C pass, with no dict in between. :func:`decode_line` never
raises on input: every failure comes back as a :class:`~schemas.dlq.Rejection`
with a stable reason code.

A well-formed object whose ``type`` is none of the known ones is not a
failure: a newer agent may speak a message this version does not know yet, and
such lines must not flood the DLQ. It comes back as :class:`Unrecognized`
(stored and counted as an ``unrecognized`` agent event), provided it is JSON
all the way through, its ``type`` is a string of at most 256 characters and a
``vm_id`` / ``vmId`` it carries is a string (the VM check follows in
:mod:`schemas.normalize`). What is malformed or forged stays a rejection.
"""

from __future__ import annotations

import re
from typing import Annotated, Final

import msgspec

from schemas.dialect1 import (
    D1ApplicationUsage,
    D1PortUsage,
    D1ProcessSnapshot,
    D1SystemMetrics,
    D1VmIdentification,
)
from schemas.dialect2 import (
    NULL_RAW,
    D2AgentEvent,
    D2CircuitBreakerState,
    D2ConnectionStatus,
    D2Error,
    D2ErrorReport,
    D2Handshake,
    D2KeepAlive,
    D2Metrics,
    D2Ping,
    D2RequestPendingScripts,
    D2Response,
    D2ScriptCompletion,
)
from schemas.dlq import Reason, Rejection, classify_validation_error
from schemas.limits import NAME_MAX, VmId

__all__ = ["AgentMessage", "Envelope", "Unrecognized", "decode_line"]

AgentMessage = (
    D1VmIdentification
    | D1SystemMetrics
    | D1ProcessSnapshot
    | D1ApplicationUsage
    | D1PortUsage
    | D2Handshake
    | D2Metrics
    | D2KeepAlive
    | D2Response
    | D2Error
    | D2ErrorReport
    | D2AgentEvent
    | D2ScriptCompletion
    | D2RequestPendingScripts
    | D2ConnectionStatus
    | D2Ping
    | D2CircuitBreakerState
)


def _null_raw() -> msgspec.Raw:
    return NULL_RAW


class Envelope(msgspec.Struct, kw_only=True):
    """What every agent message has in common, whatever its type: how an unknown type is read.

    ``timestamp`` stays raw: what it means in a message nobody documented is
    unknown, so a value that is no timestamp is ignored rather than refused.
    """

    type: Annotated[str, msgspec.Meta(min_length=1, max_length=NAME_MAX)]
    vm_id: VmId | None = None
    vmId: VmId | None = None
    timestamp: msgspec.Raw = msgspec.field(default_factory=_null_raw)


class Unrecognized(msgspec.Struct, frozen=True):
    """A well-formed message of a type this version does not know; ``raw`` is the line."""

    envelope: Envelope
    raw: bytes


_decoder: Final[msgspec.json.Decoder[AgentMessage]] = msgspec.json.Decoder(AgentMessage)
_envelope_decoder: Final = msgspec.json.Decoder(Envelope)

_NON_FINITE = (b"NaN", b"Infinity", b"-Infinity", b"inf", b"-inf", b"nan")
_BYTE_AT = re.compile(r"\(byte (\d+)\)")


def decode_line(raw: bytes) -> AgentMessage | Unrecognized | Rejection:
    """Decode one line (without its newline) into its message, or say why not."""
    if not raw or raw.isspace():
        return Rejection(Reason.EMPTY_LINE, "the line holds no message")
    # msgspec checks UTF-8 only in the strings it decodes; an invalid byte in a
    # skipped field would slip through. ASCII lines (most) skip the check.
    if not raw.isascii():
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            return Rejection(Reason.INVALID_UTF8, f"not UTF-8: {exc.reason} at byte {exc.start}")
    try:
        return _decoder.decode(raw)
    except msgspec.ValidationError as exc:
        text = str(exc)
        reason = classify_validation_error(text)
        if reason == Reason.UNKNOWN_TYPE:
            # the tag was read before the rest: the whole line is checked now
            return _unrecognized(raw)
        return Rejection(reason, text)
    except Exception as exc:
        return _failure(raw, exc)


def _unrecognized(raw: bytes) -> Unrecognized | Rejection:
    try:
        return Unrecognized(_envelope_decoder.decode(raw), raw)
    except msgspec.ValidationError as exc:
        text = str(exc)
        reason = classify_validation_error(text)
        if reason == Reason.MISSING_TYPE and "of length <=" in text:
            reason = Reason.TOO_LARGE  # a type name longer than any name
        return Rejection(reason, f"message of an unknown type: {text}")
    except Exception as exc:
        return _failure(raw, exc)


def _failure(raw: bytes, exc: Exception) -> Rejection:
    """The rejection for a decode that failed other than by validation."""
    if isinstance(exc, msgspec.DecodeError):
        text = str(exc)
        where = _BYTE_AT.search(text)
        if where is not None and raw[int(where.group(1)) :].startswith(_NON_FINITE):
            return Rejection(Reason.NON_FINITE_NUMBER, f"NaN or Infinity is not JSON: {text}")
        return Rejection(Reason.INVALID_JSON, text)
    if isinstance(exc, RecursionError):
        return Rejection(Reason.TOO_DEEP, "nesting deeper than the decoder allows")
    if isinstance(exc, UnicodeDecodeError):  # a lone surrogate escape in a string
        return Rejection(Reason.INVALID_UTF8, f"invalid string escape: {exc.reason}")
    # never let one line stop the stream
    return Rejection(Reason.INTERNAL_ERROR, f"{type(exc).__name__}: {exc}")
