"""Routing outbound events to rooms, names and payloads; plus the recent-metrics ring."""

from __future__ import annotations

import gc
from typing import Any

import msgspec

from gateway.consumer import OutboundConsumer, positioned
from gateway.deliveries import Delivery, route
from gateway.fanout import event_frame
from gateway.recent import RecentMetrics
from schemas.directory import Directory, User, encode_record
from schemas.events import OutboundEvent, decode_outbound_for_routing, encode_outbound


def _ns(user_id: str) -> str:
    return f"ns-{user_id}"


def _directory(*users: User) -> Directory:
    directory = Directory()
    for user in users:
        directory.apply(f"user:{user.id}", encode_record(user))
    return directory


def test_named_users_get_namespaced_event() -> None:
    event = OutboundEvent(resource="vms", action="update", data={"id": "vm-1"}, users=["alice"])
    assert route(event, Directory(), _ns) == [
        Delivery("ns-alice", "ns-alice:vms:update", event.payload(), "alice")
    ]


def test_users_are_deduplicated_and_admins_expanded() -> None:
    directory = _directory(
        User(id="root", role="admin"), User(id="ops", role="admin"), User(id="bob")
    )
    event = OutboundEvent(
        resource="vms", action="delete", users=["bob", "root", "bob"], admins=True
    )
    rooms = [d.room for d in route(event, directory, _ns)]
    assert rooms == ["ns-bob", "ns-root", "ns-ops"]


def test_admins_flag_without_admins_reaches_nobody() -> None:
    event = OutboundEvent(resource="vms", action="create", admins=True)
    assert route(event, _directory(User(id="bob")), _ns) == []


def test_metrics_event_to_vm_room_is_metrics_update_with_data() -> None:
    data = {"vmId": "vm-1", "metrics": {"cpu": 12.5}, "timestamp": "2026-01-01T00:00:00Z"}
    event = OutboundEvent(resource="metrics", action="update", data=data, rooms=["vm:vm-1"])
    assert route(event, Directory(), _ns) == [Delivery("vm:vm-1", "metricsUpdate", data)]


def test_other_resource_to_room_is_room_prefixed() -> None:
    event = OutboundEvent(resource="alerts", action="create", data={"x": 1}, rooms=["admin"])
    assert route(event, Directory(), _ns) == [
        Delivery("admin", "admin:alerts:create", event.payload())
    ]


def test_users_first_then_rooms_each_once() -> None:
    event = OutboundEvent(
        resource="vms", action="power_on", users=["alice"], rooms=["vm:1", "vm:1", "admin"]
    )
    assert [(d.room, d.event) for d in route(event, Directory(), _ns)] == [
        ("ns-alice", "ns-alice:vms:power_on"),
        ("vm:1", "vm:1:vms:power_on"),
        ("admin", "admin:vms:power_on"),
    ]


def test_payload_shape() -> None:
    event = OutboundEvent(resource="vms", action="update", data={"a": 1}, users=["u"])
    (delivery,) = route(event, Directory(), _ns)
    assert set(delivery.payload) == {"status", "error", "data", "timestamp", "id"}
    assert delivery.payload["id"] == event.id


def test_recent_metrics_ring_is_bounded() -> None:
    recent = RecentMetrics(per_vm=3, max_vms=2)
    for i in range(5):
        recent.add("a", i)
    assert recent.latest("a", 10) == [2, 3, 4]
    assert recent.latest("a", 2) == [3, 4]
    assert recent.latest("a", 0) == []
    recent.add("b", "b0")
    recent.add("c", "c0")  # evicts "a", the least recently updated
    assert recent.latest("a", 10) == []
    assert recent.latest("c", 10) == ["c0"]


def test_recent_metrics_observes_only_metrics_to_vm_rooms() -> None:
    recent = RecentMetrics()
    recent.observe(OutboundEvent(resource="metrics", action="update", data=1, rooms=["vm:x"]))
    recent.observe(OutboundEvent(resource="vms", action="update", data=2, rooms=["vm:x"]))
    recent.observe(OutboundEvent(resource="metrics", action="update", data=3, rooms=["admin"]))
    assert recent.latest("x", 10) == [1]


def test_a_live_update_is_routed_and_kept_without_decoding_its_data() -> None:
    sample = {"vmId": "x", "metrics": {"cpu": {"usage_percent": 12.5}}, "timestamp": "t"}
    event = OutboundEvent(resource="metrics", action="update", data=sample, rooms=["vm:x"])
    routed = decode_outbound_for_routing(encode_outbound(event))
    assert isinstance(routed.data, msgspec.Raw)  # no dict tree for the collector to walk
    (delivery,) = route(routed, Directory(), _ns)
    sent = msgspec.json.decode(
        event_frame(delivery.event, positioned(delivery.payload, "4.2")).data[1:]
    )
    # what a watcher receives is what the dict path sent: the data plus its position
    assert sent == ["metricsUpdate", {**sample, "position": "4.2"}]
    recent = RecentMetrics()
    recent.observe(routed)
    assert gc.is_tracked(recent._samples["x"][0]) is False
    assert recent.latest("x", 5) == [sample]


def test_other_events_are_decoded_whole_for_routing() -> None:
    event = OutboundEvent(resource="vms", action="update", data={"vmId": "x"}, rooms=["vm:x"])
    assert decode_outbound_for_routing(encode_outbound(event)) == event


def test_the_position_goes_into_any_json_object_and_leaves_the_rest() -> None:
    assert positioned(msgspec.Raw(b"{}"), "1") == msgspec.Raw(b'{"position":"1"}')
    assert positioned(msgspec.Raw(b' { "a" : 1 } '), "1") == msgspec.Raw(
        b'{"a" : 1,"position":"1"}'
    )
    for not_an_object in (b"null", b"[1]", b"3"):
        assert positioned(msgspec.Raw(not_an_object), "1") == msgspec.Raw(not_an_object)


async def test_an_update_for_an_empty_room_is_not_built_or_emitted() -> None:
    emitted: list[tuple[str, Any, str]] = []

    async def emit(event: str, payload: Any, room: str) -> tuple[int, int]:
        emitted.append((event, payload, room))
        return 1, 0

    consumer = OutboundConsumer(
        "unused:9092", "t", Directory(), _ns, emit, occupied=lambda room: room == "vm:a"
    )
    for vm in ("a", "b"):
        data = msgspec.Raw(b'{"vmId":"%s"}' % vm.encode())
        event = OutboundEvent(resource="metrics", action="update", data=data, rooms=[f"vm:{vm}"])
        await consumer.dispatch(event, "7")
    # the watched VM's update goes out with its position; the other one is not sent
    assert emitted == [("metricsUpdate", msgspec.Raw(b'{"vmId":"a","position":"7"}'), "vm:a")]
    assert consumer.delivered == 2
