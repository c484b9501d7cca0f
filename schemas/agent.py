"""Guest agent messages, decoded once at the edge: both dialects in one tagged union.

One module-level msgspec decoder knows all fourteen message types (PROTOCOL.md)
by their ``type`` tag, so a line is parsed, type checked, range checked and
capped in a single C pass, with no dict in between. :func:`decode_line` never
raises on input: every failure comes back as a :class:`~schemas.dlq.Rejection`
with a stable reason code.
"""

from __future__ import annotations

import re

import msgspec

from schemas.dialect1 import (
    D1ApplicationUsage,
    D1PortUsage,
    D1ProcessSnapshot,
    D1SystemMetrics,
    D1VmIdentification,
)
from schemas.dialect2 import (
    D2AgentEvent,
    D2Error,
    D2ErrorReport,
    D2Handshake,
    D2KeepAlive,
    D2Metrics,
    D2RequestPendingScripts,
    D2Response,
    D2ScriptCompletion,
)
from schemas.dlq import Reason, Rejection, classify_validation_error

__all__ = ["AgentMessage", "decode_line"]

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
)

_decoder: msgspec.json.Decoder[AgentMessage] = msgspec.json.Decoder(AgentMessage)

_NON_FINITE = (b"NaN", b"Infinity", b"-Infinity", b"inf", b"-inf", b"nan")
_BYTE_AT = re.compile(r"\(byte (\d+)\)")


def decode_line(raw: bytes) -> AgentMessage | Rejection:
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
        return Rejection(classify_validation_error(text), text)
    except msgspec.DecodeError as exc:
        text = str(exc)
        where = _BYTE_AT.search(text)
        if where is not None and raw[int(where.group(1)) :].startswith(_NON_FINITE):
            return Rejection(Reason.NON_FINITE_NUMBER, f"NaN or Infinity is not JSON: {text}")
        return Rejection(Reason.INVALID_JSON, text)
    except RecursionError:
        return Rejection(Reason.TOO_DEEP, "nesting deeper than the decoder allows")
    except UnicodeDecodeError as exc:  # a lone surrogate escape in a string
        return Rejection(Reason.INVALID_UTF8, f"invalid string escape: {exc.reason}")
    except Exception as exc:  # never let one line stop the stream
        return Rejection(Reason.INTERNAL_ERROR, f"{type(exc).__name__}: {exc}")
