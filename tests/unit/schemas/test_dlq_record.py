"""A dead letter keeps the refused line byte for byte, and stays within a record's size."""

from __future__ import annotations

import base64

from schemas.dlq import (
    DlqOrigin,
    Rejection,
    decode_dlq_record,
    encode_dlq_record,
    make_dlq_record,
)
from schemas.topics import MAX_BATCH_BYTES

ORIGIN = DlqOrigin(topic="agent.raw", partition=0, offset=7, vm_id="vm-1")
WHY = Rejection("invalid_json", "expected a value")


def _raw_of(value: bytes) -> bytes:
    record = decode_dlq_record(value)
    if record.raw_encoding == "utf-8":
        return record.raw.encode("utf-8")
    return base64.b64decode(record.raw)


def test_a_readable_line_stays_text() -> None:
    line = b'{"type":"system_metrics","cpu":"high \\"quoted\\""'
    record = make_dlq_record(line, WHY, ORIGIN)
    assert record.raw_encoding == "utf-8"
    assert _raw_of(encode_dlq_record(record)) == line


def test_a_line_that_is_not_utf8_is_base64() -> None:
    line = b'{"name":"\xff\xfe"}'
    record = make_dlq_record(line, WHY, ORIGIN)
    assert record.raw_encoding == "base64"
    assert _raw_of(encode_dlq_record(record)) == line


def test_control_bytes_that_would_swell_the_record_make_it_base64() -> None:
    # valid UTF-8, but as JSON text each byte would become \u0001: six times the line,
    # a 24 MiB record for a 4 MiB line, which no topic takes
    line = b"\x01" * (4 * 1024 * 1024)
    value = encode_dlq_record(make_dlq_record(line, WHY, ORIGIN))
    assert decode_dlq_record(value).raw_encoding == "base64"
    assert len(value) <= len(line) * 4 // 3 + 1024 < MAX_BATCH_BYTES
    assert _raw_of(value) == line


def test_a_few_control_bytes_keep_a_line_readable() -> None:
    line = b'{"type":"ping","note":"tab\there"}' + b"x" * 200
    record = make_dlq_record(line, WHY, ORIGIN)
    assert record.raw_encoding == "utf-8"
    assert _raw_of(encode_dlq_record(record)) == line


def test_a_short_line_stays_text_however_many_quotes_it_has() -> None:
    line = b'{"a":"b","c":"d"}'  # escaped it grows by half, more than base64 would
    assert make_dlq_record(line, WHY, ORIGIN).raw_encoding == "utf-8"
