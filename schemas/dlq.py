"""Dead letters: why a line was refused, and the DLQ record that says so.

Reason codes are a stable contract (operators alert and count on them; the
list is documented in docs/PROTOCOL_VALIDATION.md): add codes, never rename
one. :func:`classify_validation_error` maps msgspec's validation messages to
codes, so the decoder's own checks (types, ranges, caps) need no second pass.
"""

from __future__ import annotations

import base64
import enum
from typing import Literal

import msgspec

__all__ = [
    "DlqOrigin",
    "DlqRecord",
    "Reason",
    "Rejection",
    "classify_validation_error",
    "decode_dlq_record",
    "encode_dlq_record",
    "make_dlq_record",
]


class Reason(enum.StrEnum):
    """Stable reason codes of ``agent.dlq`` records."""

    EMPTY_LINE = "empty_line"
    INVALID_UTF8 = "invalid_utf8"
    INVALID_JSON = "invalid_json"
    NON_FINITE_NUMBER = "non_finite_number"
    NOT_AN_OBJECT = "not_an_object"
    MISSING_TYPE = "missing_type"
    UNKNOWN_TYPE = "unknown_type"
    SCHEMA_VIOLATION = "schema_violation"
    OUT_OF_RANGE = "out_of_range"
    TOO_LARGE = "too_large"
    TOO_DEEP = "too_deep"
    BAD_TIMESTAMP = "bad_timestamp"
    VM_MISMATCH = "vm_mismatch"
    NO_VM = "no_vm"
    LINE_TOO_LONG = "line_too_long"
    TRUNCATED_LINE = "truncated_line"
    LINE_OVERFLOW = "line_overflow"
    INTERNAL_ERROR = "internal_error"


class Rejection(msgspec.Struct, frozen=True):
    """Why a line was refused: ``reason`` is a stable code, ``detail`` is for humans."""

    reason: str
    detail: str


class DlqOrigin(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Where the rejected line came from. The bridge's records have no Kafka position."""

    topic: str | None
    partition: int | None
    offset: int | None
    vm_id: str
    transport: str | None = None
    received_at: str | int | None = None
    conn_id: str | None = None
    line_no: int | None = None
    peer: str | None = None
    length: int | None = None


class DlqRecord(msgspec.Struct, kw_only=True):
    """One ``agent.dlq`` record (key: the VM id)."""

    reason: str
    detail: str
    raw: str
    origin: DlqOrigin
    raw_encoding: Literal["utf-8", "base64"] = "base64"


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(DlqRecord)

_DETAIL_MAX = 2000


_CONTROL = bytes(range(0x20))
_QUOTING = b'"\\'
_READABLE_MAX = 1024 * 1024
"""Escaped text up to this size stays text whatever its share of escapes (a short JSON
line is a fifth quotes); past it, text only if no larger than base64."""


def _escaped_size(raw: bytes) -> int:
    """The size of ``raw`` as a JSON string's contents: a control byte becomes up to six
    bytes (``\\u0001``), a quote or backslash two."""
    controls = len(raw) - len(raw.translate(None, _CONTROL))
    quoting = len(raw) - len(raw.translate(None, _QUOTING))
    return len(raw) + 5 * controls + quoting


def make_dlq_record(raw: bytes, rejection: Rejection, origin: DlqOrigin) -> DlqRecord:
    """The record for ``raw``, byte for byte: as text when it is UTF-8 and its JSON
    escapes stay small (a megabyte, or no more than base64 would be), else base64.

    The bound matters: a 4 MiB line of control bytes is valid UTF-8 and would be
    24 MiB of escapes, over what a topic takes (schemas/topics.py), and a DLQ record
    that cannot be sent stops the worker's storage (it retries the batch). So a
    record is at most 4/3 of its line, or a megabyte.
    """
    encoding: Literal["utf-8", "base64"] = "base64"
    try:
        text = raw.decode("utf-8")
        escaped = _escaped_size(raw)
        if escaped <= _READABLE_MAX or escaped <= 4 * ((len(raw) + 2) // 3):
            encoding = "utf-8"
    except UnicodeDecodeError:
        pass
    if encoding == "base64":
        text = base64.b64encode(raw).decode("ascii")
    return DlqRecord(
        reason=rejection.reason,
        detail=rejection.detail[:_DETAIL_MAX],
        raw=text,
        raw_encoding=encoding,
        origin=origin,
    )


def encode_dlq_record(record: DlqRecord) -> bytes:
    return _encoder.encode(record)


def decode_dlq_record(value: bytes) -> DlqRecord:
    """Read a DLQ record (raises msgspec errors on a malformed one)."""
    return _decoder.decode(value)


def classify_validation_error(message: str) -> Reason:
    """The reason code for a msgspec ValidationError message.

    msgspec's messages are stable in shape: ``Expected `int` >= 0 - at `$.x```,
    ``Expected `array` of length <= 1000``, ``Number out of range``,
    ``Invalid value 'x' - at `$.type```, ``Object missing required field `type```.
    """
    if message.startswith("Invalid value ") and message.endswith("- at `$.type`"):
        return Reason.UNKNOWN_TYPE
    if message == "Object missing required field `type`" or message.endswith("- at `$.type`"):
        return Reason.MISSING_TYPE
    if message.startswith("Expected `object`, got") and " - at " not in message:
        return Reason.NOT_AN_OBJECT
    if "of length <=" in message:
        return Reason.TOO_LARGE
    if message.startswith("Number out of range") or (
        message.startswith("Expected `")
        and ("` >= " in message or "` <= " in message or "` > " in message or "` < " in message)
    ):
        return Reason.OUT_OF_RANGE
    return Reason.SCHEMA_VIOLATION
