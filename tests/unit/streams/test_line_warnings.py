"""The worker's warnings about refused and unrecognized lines: every line is in the DLQ or
stored, but the log gets a few lines per VM, whatever a guest writes."""

from __future__ import annotations

import logging

import pytest

from infra.log_budget import WarningBudget
from streams.line_warnings import LineWarnings
from streams.pipeline import RawRecord, process_batch

log = logging.getLogger("test.line_warnings")


def _rec(vm: bytes, value: bytes, offset: int) -> RawRecord:
    return RawRecord(
        topic="agent.raw",
        partition=0,
        offset=offset,
        key=vm,
        value=value,
        headers={"received_at": b"1764064800000"},
    )


def test_a_flooding_vm_gets_its_burst_the_others_their_lines(
    caplog: pytest.LogCaptureFixture,
) -> None:
    records = [_rec(b"vm-a", b"{garbage", i) for i in range(1000)]
    records += [_rec(b"vm-b", b'{"type":"ping","sequence":-1}', 1000 + i) for i in range(3)]
    records.append(_rec(b"vm-c", b'{"type":"gpu_metrics","util":3}', 2000))
    result = process_batch(records)
    assert len(result.rejects) == 1003 and len(result.unrecognized) == 1  # all accounted
    warnings = LineWarnings(log, WarningBudget(burst=5, per_s=0.1))
    with caplog.at_level(logging.WARNING, logger=log.name):
        warnings.report(result, now=0.0)
    lines = [r.getMessage() for r in caplog.records]
    assert sum(m.startswith("VM vm-a:") for m in lines) == 5
    assert sum(m.startswith("VM vm-b:") for m in lines) == 3
    assert lines[0] == (
        "VM vm-a: line refused (invalid_json) at agent.raw[0]@0: "
        "JSON is malformed: object keys must be strings (byte 1)"
    )
    assert "(out_of_range)" in lines[5] and "agent.raw[0]@1000" in lines[5]
    assert lines[-1] == (
        "VM vm-c: message of unrecognized type 'gpu_metrics', stored as an unrecognized agent event"
    )
    # ten seconds later vm-a may speak again, and says what was held back
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger=log.name):
        warnings.report(process_batch([_rec(b"vm-a", b"[1]", 3000)]), now=10.0)
    (message,) = [r.getMessage() for r in caplog.records]
    assert message.startswith("VM vm-a: line refused (not_an_object) at agent.raw[0]@3000")
    assert message.endswith("(995 similar warnings suppressed before this one)")


def test_a_long_detail_is_cut_in_the_log_not_in_the_dlq(caplog: pytest.LogCaptureFixture) -> None:
    result = process_batch([_rec(b"vm-a", b'{"type":"ping","sequence":"' + b"9" * 5000 + b'"}', 1)])
    with caplog.at_level(logging.WARNING, logger=log.name):
        LineWarnings(log).report(result, now=0.0)
    (record,) = caplog.records
    assert len(record.getMessage()) < 500
