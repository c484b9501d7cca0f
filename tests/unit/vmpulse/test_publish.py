"""The platform's publish API refuses bad input before anything reaches Kafka."""

from __future__ import annotations

import pytest

from vmpulse.publish import PublishError, check_id, make_event


def test_a_valid_event() -> None:
    event = make_event("vms", "power_on", {"id": "vm-1"}, "alice")
    assert (event.resource, event.action, event.triggered_by) == ("vms", "power_on", "alice")
    assert event.id and event.time.endswith("Z")


@pytest.mark.parametrize(
    ("resource", "action", "data", "by"),
    [
        ("VMs", "update", None, None),
        ("vms", "", None, None),
        ("vms", "up date", None, None),
        ("vms", "update", {"x": object()}, None),
        ("vms", "update", None, " alice"),
        ("vms", "update", None, "x" * 300),
    ],
)
def test_bad_events_are_refused(resource: str, action: str, data: object, by: str | None) -> None:
    with pytest.raises(PublishError):
        make_event(resource, action, data, by)


def test_ids_must_be_printable() -> None:
    assert check_id("id", "vm-1") == "vm-1"
    with pytest.raises(PublishError):
        check_id("id", "a\nb")
