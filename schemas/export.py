"""JSON Schema of the wire formats and internal events, generated from the models.

``python -m schemas.export`` rewrites ``schemas/jsonschema/*.json``;
``python -m schemas.export --check`` exits 1 when a file is stale (a unit test
does the same), so the published schemas never drift from the Structs that
actually validate the traffic.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import msgspec

from schemas.agent import AgentMessage, Envelope
from schemas.dialect1 import DIALECT1
from schemas.dialect2 import DIALECT2
from schemas.dlq import DlqRecord
from schemas.facts import Activity, ConnectionEvent, Fact

__all__ = ["SCHEMA_DIR", "render", "stale", "write"]

SCHEMA_DIR = Path(__file__).resolve().parent / "jsonschema"


def _union_schema(title: str, description: str, types: tuple[Any, ...]) -> dict[str, Any]:
    (schemas, components) = msgspec.json.schema_components(types, ref_template="#/$defs/{name}")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": title,
        "description": description,
        "anyOf": schemas,
        "$defs": components,
    }


def _agent_message_schema() -> dict[str, Any]:
    """Both dialects, and the envelope an object of any other ``type`` must still have."""
    doc = _union_schema(
        "vmpulse agent message (either dialect)",
        "What the worker accepts on agent.raw: the union of both dialects. An object "
        "of another `type` (a string of 1..256 characters, with `vm_id` / `vmId` "
        "strings naming the connection's VM if present) is kept as an `unrecognized` "
        "agent event (docs/PROTOCOL_VALIDATION.md).",
        (AgentMessage, Envelope),
    )
    known = sorted(str(t.__struct_config__.tag) for t in (*DIALECT1, *DIALECT2))
    envelope = doc["$defs"]["Envelope"]
    envelope["title"] = "Unrecognized"
    envelope["properties"]["type"]["not"] = {"enum": known}
    return doc


def render() -> dict[str, str]:
    """File name -> JSON text of every schema file."""
    docs = {
        "dialect1.json": _union_schema(
            "vmpulse agent protocol, dialect 1 (documented protocol)",
            "One JSON object per line; `type` selects the message.",
            DIALECT1,
        ),
        "dialect2.json": _union_schema(
            "vmpulse agent protocol, dialect 2 (InfiniService agent)",
            "One JSON object per line; `type` selects the message.",
            DIALECT2,
        ),
        "agent_message.json": _agent_message_schema(),
        "facts.json": _union_schema(
            "vmpulse normalized facts",
            "The internal form every accepted agent message becomes; `kind` selects the fact.",
            (Fact,),
        ),
        "presence.json": _union_schema(
            "vmpulse presence signals",
            "Connection events (bridge control records) and per-message activity.",
            (ConnectionEvent, Activity),
        ),
        "dlq_record.json": _union_schema(
            "vmpulse agent.dlq record",
            "One rejected line: reason code, detail, the raw line and its origin.",
            (DlqRecord,),
        ),
    }
    return {name: json.dumps(doc, indent=2, sort_keys=True) + "\n" for name, doc in docs.items()}


def stale(directory: Path = SCHEMA_DIR) -> list[str]:
    """Names of schema files that are missing or differ from the models."""
    out = []
    for name, text in render().items():
        path = directory / name
        if not path.exists() or path.read_text() != text:
            out.append(name)
    return out


def write(directory: Path = SCHEMA_DIR) -> list[str]:
    directory.mkdir(parents=True, exist_ok=True)
    rendered = render()
    for name, text in rendered.items():
        (directory / name).write_text(text)
    return sorted(rendered)


def main(argv: list[str]) -> int:
    if "--check" in argv:
        names = stale()
        if names:
            print(f"stale JSON Schema files: {', '.join(names)}; run python -m schemas.export")
            return 1
        return 0
    for name in write():
        print(SCHEMA_DIR / name)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
