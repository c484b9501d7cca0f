"""The OpenAPI document: valid 3.1, checked in up to date, and covering every HTTP route."""

from __future__ import annotations

from openapi_spec_validator import validate

from gateway.admin import AdminOverview, DlqCounts
from gateway.api import GatewayApi
from gateway.auth import TokenPolicy
from gateway.openapi import DOCUMENT_PATH, openapi_document, stale
from gateway.params import HISTORY_STEP, RECENT_COUNT
from gateway.recent import RecentMetrics
from gateway.stats import GatewayStats
from gateway.vmstate import VmStates
from schemas.directory import Directory


def test_the_document_is_valid_openapi_3_1() -> None:
    doc = openapi_document()
    assert doc["openapi"].startswith("3.1")
    validate(doc)


def test_the_checked_in_document_is_not_stale() -> None:
    assert not stale(), f"{DOCUMENT_PATH} is stale: run `python -m gateway.openapi`"


def _api() -> GatewayApi:
    return GatewayApi(
        directory=Directory(),
        policy=TokenPolicy("x" * 32),
        is_live=lambda: True,
        is_ready=lambda: True,
        stats=GatewayStats(),
        recent=RecentMetrics(per_vm=10),
        vm_states=VmStates(),
        connections=list,
    )


def _admin() -> AdminOverview:
    async def no_dlq() -> dict[str, int]:
        return {}

    return AdminOverview(
        directory=Directory(),
        policy=TokenPolicy("x" * 32),
        stats=GatewayStats(),
        dlq=DlqCounts(no_dlq),  # type: ignore[arg-type]
    )


def test_every_route_is_documented_and_every_documented_path_is_routed() -> None:
    # the dashboard's page and assets are not API operations
    routes = [*_api().routes(), *_admin().routes()]
    routed = {(route.method.lower(), route.path) for route in routes}
    documented = {
        (method, path)
        for path, operations in openapi_document()["paths"].items()
        for method in operations
    }
    assert routed == documented


def test_parameters_are_documented_from_their_parsers() -> None:
    params = {
        p["name"]: p["schema"]
        for path in openapi_document()["paths"].values()
        for op in path.values()
        for p in op.get("parameters", [])
    }
    assert params["count"]["maximum"] == RECENT_COUNT.maximum
    assert params["step"]["maximum"] == HISTORY_STEP.maximum
    assert params["vm_id"]["maxLength"] == 128


def test_every_api_operation_may_answer_429_with_retry_after() -> None:
    for path, operations in openapi_document()["paths"].items():
        if not path.startswith("/api/"):
            continue
        for op in operations.values():
            limited = op["responses"]["429"]
            assert limited["headers"]["Retry-After"]["required"] is True
            assert "401" in op["responses"] and op["security"] == [{"bearer": []}]
