"""The JSON Schema files in schemas/jsonschema are what the models generate today."""

from __future__ import annotations

import json

from schemas.export import SCHEMA_DIR, render, stale


def test_schema_files_are_current() -> None:
    assert stale() == [], "JSON Schema files are stale: run `python -m schemas.export`"


def test_schemas_name_every_message_type() -> None:
    d1 = json.loads((SCHEMA_DIR / "dialect1.json").read_text())
    d2 = json.loads((SCHEMA_DIR / "dialect2.json").read_text())

    def tags(doc: dict[str, object]) -> set[str]:
        defs = doc["$defs"]
        assert isinstance(defs, dict)
        return {
            d["properties"]["type"]["enum"][0]
            for d in defs.values()
            if "type" in d.get("properties", {}) and "enum" in d["properties"]["type"]
        }

    assert tags(d1) == {
        "vm_identification",
        "system_metrics",
        "process_snapshot",
        "application_usage",
        "port_usage",
    }
    assert tags(d2) == {
        "handshake",
        "metrics",
        "keep_alive",
        "response",
        "error",
        "error_report",
        "agent_event",
        "script_completion",
        "request_pending_scripts",
        "connection_status",
        "ping",
        "circuit_breaker_state",
    }


def test_the_agent_message_schema_keeps_other_types_as_unrecognized() -> None:
    doc = json.loads((SCHEMA_DIR / "agent_message.json").read_text())
    envelope = doc["$defs"]["Envelope"]
    assert envelope["title"] == "Unrecognized" and envelope["required"] == ["type"]
    known = set(envelope["properties"]["type"]["not"]["enum"])
    assert {"metrics", "ping", "connection_status", "system_metrics"} <= known
    assert len(known) == 17


def test_a_stale_file_is_detected(tmp_path: object) -> None:
    from pathlib import Path

    directory = Path(str(tmp_path))
    for name, text in render().items():
        (directory / name).write_text(text)
    assert stale(directory) == []
    (directory / "dialect2.json").write_text("{}\n")
    assert stale(directory) == ["dialect2.json"]
