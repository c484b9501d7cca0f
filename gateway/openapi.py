"""The OpenAPI 3.1 document of the gateway's HTTP API, generated from code.

Bodies are msgspec Structs, their JSON Schema made by msgspec; query
parameters come from their declarations in :mod:`gateway.params`, the same
objects that parse them. The gateway serves the document at
``GET /openapi.json``; ``python -m gateway.openapi`` writes it to
``schemas/openapi.json`` and ``--check`` exits 1 when that file is stale (a
unit test does the same). The running gateway is fuzzed against it with
schemathesis (tests/integration/gateway/test_openapi_fuzz.py): no 5xx, every
answer as documented.

Socket.IO (``/socket.io/``) is another protocol and is described in
docs/SOCKETIO.md, not here.
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec

from gateway.params import HISTORY_FROM, HISTORY_STEP, HISTORY_TO, RECENT_COUNT
from gateway.rooms import MAX_VM_ID_LENGTH

__all__ = ["DOCUMENT_PATH", "openapi_document", "openapi_json", "render", "stale"]

DOCUMENT_PATH = Path(__file__).resolve().parent.parent / "schemas" / "openapi.json"
_REF = "#/components/schemas/{name}"


class Error(msgspec.Struct):
    """Every refusal: the message a client can show (the Socket.IO refusals' texts for 401)."""

    error: str


class Status(msgspec.Struct):
    """Liveness or readiness."""

    status: str


class VmView(msgspec.Struct):
    """A VM the caller may watch, with its latest known states (null until one is seen)."""

    id: str
    name: str
    owner: str | None
    department: str | None
    powerState: str | None
    agentState: str | None
    stateUpdatedAt: str | None


class VmList(msgspec.Struct):
    vms: list[VmView]


class RecentSamples(msgspec.Struct):
    """The latest samples of the per-VM buffer, oldest first, as the worker sent them."""

    vmId: str
    samples: list[Any]


class History(msgspec.Struct, rename={"from_": "from"}):
    """Metric history: `rows` follow `columns` (`t` is epoch ms)."""

    vmId: str
    from_: str
    to: str
    resolution: Literal["raw", "1m", "1h"]
    step: int | None
    source: str
    columns: list[str]
    rows: list[list[Any]]


class QueryRequest(msgspec.Struct):
    """One read-only SQL statement."""

    sql: Annotated[str, msgspec.Meta(examples=["SELECT count() FROM system_metrics"])]


class QueryResult(msgspec.Struct):
    """`truncated` is present (true) when rows past the limit were left out."""

    columns: list[str]
    rows: list[list[Any]]
    truncated: bool = False


class Connection(msgspec.Struct):
    sid: str
    user: str
    transport: Literal["websocket", "polling"]
    connectedAt: str
    subscriptions: list[str]


class Connections(msgspec.Struct):
    count: int
    connections: list[Connection]


class Delivery(msgspec.Struct):
    delivered: int
    failed: int
    successRate: float


class Deliveries(msgspec.Struct):
    users: dict[str, Delivery]


_BODIES: tuple[type[msgspec.Struct], ...] = (
    Error,
    Status,
    VmList,
    RecentSamples,
    History,
    QueryRequest,
    QueryResult,
    Connections,
    Deliveries,
)

_VM_ID = {
    "name": "vm_id",
    "in": "path",
    "required": True,
    "description": "The VM. One that does not exist and one you may not watch get the same 404.",
    "schema": {
        "type": "string",
        "minLength": 1,
        "maxLength": MAX_VM_ID_LENGTH,
        "examples": ["3f1c2a9e-8d4b-4c1e-9a57-0b6f2d1e7c42"],
    },
}

_ERRORS = {
    400: "The request is malformed; `error` says which parameter and why.",
    401: "No token, or a token that fails (`Authentication token required`, "
    "`Authentication failed`, `User not found`).",
    403: "`Admin role required`.",
    404: "`Access denied`: no such VM, or not one the caller may watch.",
    413: "The body is larger than the server accepts.",
    429: "Too many requests or queries for this caller; retry after `Retry-After` seconds.",
    502: "The metric store failed.",
    503: "No metric store is configured on this gateway.",
    504: "The metric store did not answer in time.",
}


def _json_body(name: str, description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": _REF.format(name=name)}}},
    }


_PARSER_400 = (
    " A request line or header longer than 8,190 bytes, or one holding bytes HTTP forbids,"
    " is refused by the HTTP layer before the gateway reads the request: 400 with a"
    " plain-text reason."
)


def _error(status: int) -> dict[str, Any]:
    response = _json_body("Error", _ERRORS[status])
    if status == 400:
        # aiohttp's parser answers these itself, in text/plain (no hook makes it JSON)
        response["description"] += _PARSER_400
        response["content"]["text/plain"] = {"schema": {"type": "string"}}
    if status == 429:
        response["headers"] = {
            "Retry-After": {
                "description": "Seconds to wait before the next request.",
                "required": True,
                "schema": {"type": "integer", "minimum": 0},
            }
        }
    return response


def _operation(
    summary: str,
    ok: tuple[str, str],
    errors: tuple[int, ...],
    *,
    parameters: list[dict[str, Any]] | None = None,
    body: str | None = None,
) -> dict[str, Any]:
    responses: dict[str, Any] = {"200": _json_body(*ok)}
    for status in errors:
        responses[str(status)] = _error(status)
    op: dict[str, Any] = {"summary": summary, "responses": responses}
    if parameters:
        op["parameters"] = parameters
    if body is not None:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": _REF.format(name=body)}}},
        }
    op["security"] = [{"bearer": []}]
    return op


def _paths() -> dict[str, Any]:
    # /api/* may also answer 429 with Retry-After (per-caller limits on reads).
    api = (401, 429)
    status_503 = {"description": "Not serving (stopped, or still catching up).", **_status()}
    return {
        "/healthz": {
            "get": {
                "summary": "Liveness: 200 while the gateway serves.",
                "security": [],
                "responses": {"200": _json_body("Status", "Serving."), "503": status_503},
            }
        },
        "/readyz": {
            "get": {
                "summary": "Readiness: the directory is read and the outbound consumer caught up.",
                "security": [],
                "responses": {"200": _json_body("Status", "Ready."), "503": status_503},
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics of this gateway instance.",
                "security": [],
                "responses": {
                    "200": {
                        "description": "Prometheus text exposition format.",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
        "/openapi.json": {
            "get": {
                "summary": "This document.",
                "security": [],
                "responses": {
                    "200": {
                        "description": "OpenAPI 3.1 document.",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    }
                },
            }
        },
        "/api/vms": {
            "get": _operation(
                "The VMs the caller may watch, with their latest power and agent states.",
                ("VmList", "The caller's VMs (all of them for an admin)."),
                api,
            )
        },
        "/api/vms/{vm_id}/metrics/recent": {
            "get": _operation(
                "The latest samples of a VM from the gateway's buffer (as `metrics:recent`).",
                ("RecentSamples", "Up to `count` samples, oldest first."),
                (400, *api, 404),
                parameters=[_VM_ID, RECENT_COUNT.openapi()],
            )
        },
        "/api/vms/{vm_id}/metrics": {
            "get": _operation(
                "Metric history from ClickHouse; the range picks the resolution (raw up to "
                "6 h, 1-minute rollup up to 14 days, 1-hour beyond; at most two years and "
                "10,000 rows).",
                ("History", "The samples or buckets of the range."),
                (400, *api, 404, 502, 503, 504),
                parameters=[
                    _VM_ID,
                    *(p.openapi() for p in (HISTORY_FROM, HISTORY_TO, HISTORY_STEP)),
                ],
            )
        },
        "/api/query": {
            "post": _operation(
                "Admins: one read-only SQL statement against the metric store.",
                ("QueryResult", "Columns and rows (at most 10,000)."),
                (400, *api, 403, 413, 503, 504),
                body="QueryRequest",
            )
        },
        "/api/admin/overview": {
            "get": {
                "summary": "Admins: this instance's delivery figures and the DLQ counted by reason "
                "(what the dashboard's admin panel shows; docs/SOCKETIO.md lists the keys).",
                "security": [{"bearer": []}],
                "responses": {
                    "200": {
                        "description": "`{gateway, deliveries, dlq}`.",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    },
                    **{str(status): _error(status) for status in (*api, 403)},
                },
            }
        },
        "/debug/connections": {
            "get": _operation(
                "Admins: the Socket.IO connections of this instance.",
                ("Connections", "Every authenticated socket."),
                (401, 403),
            )
        },
        "/debug/deliveries": {
            "get": _operation(
                "Admins: events delivered and failed per user on this instance.",
                ("Deliveries", "Per user id."),
                (401, 403),
            )
        },
    }


def _status() -> dict[str, Any]:
    return {"content": {"application/json": {"schema": {"$ref": _REF.format(name="Status")}}}}


@functools.cache
def openapi_document() -> dict[str, Any]:
    """The document as a JSON-ready dict (built once)."""
    _, components = msgspec.json.schema_components(_BODIES, ref_template=_REF)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "vmpulse gateway HTTP API",
            "version": "1",
            "description": "Metric history, recent samples, the caller's VMs, admin SQL and "
            "operations endpoints of a vmpulse gateway. Authentication is the browser's JWT "
            "as `Authorization: Bearer <jwt>`; the directory, not the token, says who is an "
            'admin and which VMs a user may watch. Errors are `{"error": message}`. The '
            "Socket.IO contract is in docs/SOCKETIO.md.",
        },
        "paths": _paths(),
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            },
        },
    }


def render() -> str:
    """The checked-in text of the document."""
    return json.dumps(openapi_document(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


@functools.cache
def openapi_json() -> bytes:
    return render().encode()


def stale(path: Path = DOCUMENT_PATH) -> bool:
    """Whether the checked-in document differs from the code."""
    try:
        return path.read_text(encoding="utf-8") != render()
    except OSError:
        return True


def main(argv: list[str]) -> int:
    if "--check" in argv:
        if stale():
            print(f"{DOCUMENT_PATH} is stale: run `python -m gateway.openapi`", file=sys.stderr)
            return 1
        return 0
    DOCUMENT_PATH.write_text(render(), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
