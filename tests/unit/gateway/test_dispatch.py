"""Client packets and the two doors of the namespace, without a server."""

from __future__ import annotations

import pytest
import socketio
from hypothesis import given
from hypothesis import strategies as st
from socketio import packet

from gateway.auth import TokenPolicy
from gateway.dispatch import ClientEventServer, ClientPacket, MalformedPacket
from gateway.namespace import GatewayNamespace
from gateway.rooms import namespace_function
from schemas.directory import Directory

SECRET = "unit-test-secret-" + "0123456789abcdef" * 4


def _namespace() -> GatewayNamespace:
    return GatewayNamespace(
        directory=Directory(),
        policy=TokenPolicy(SECRET),
        namespace_of=namespace_function(SECRET),
    )


@pytest.mark.parametrize(
    ("frame", "kind", "data"),
    [
        ('2["subscribe",{"vmId":"a"}]', packet.EVENT, ["subscribe", {"vmId": "a"}]),
        ('27["metrics:recent"]', packet.EVENT, ["metrics:recent"]),
        ('0{"token":"t"}', packet.CONNECT, {"token": "t"}),
        ("1", packet.DISCONNECT, None),
        ("31[1]", packet.ACK, [1]),
    ],
)
def test_what_a_client_may_send_decodes(frame: str, kind: int, data: object) -> None:
    pkt = ClientPacket(encoded_packet=frame)
    assert (pkt.packet_type, pkt.data) == (kind, data)


@pytest.mark.parametrize(
    "frame",
    [
        *("", b"", "2", "2[]", "2{}", '2"x"', "2[1]", "2[null]", "X", "²", '2²["x"]'),
        *("4{}", "7", "3{}", "2" + "[" * 20_000, b"\x00"),
    ],
)
def test_what_a_client_may_not_send_is_malformed(frame: str | bytes) -> None:
    with pytest.raises(MalformedPacket):
        ClientPacket(encoded_packet=frame)


@given(st.one_of(st.text(max_size=200), st.binary(max_size=50)))
def test_decoding_any_input_either_works_or_says_malformed(frame: str | bytes) -> None:
    try:
        pkt = ClientPacket(encoded_packet=frame)
    except MalformedPacket:
        return
    if pkt.packet_type in (packet.EVENT, packet.BINARY_EVENT):
        assert isinstance(pkt.data, list) and isinstance(pkt.data[0], str)


def test_an_attachment_that_does_not_fit_is_malformed() -> None:
    pkt = ClientPacket(encoded_packet='51-["subscribe",{"_placeholder":true,"num":3}]')
    with pytest.raises(MalformedPacket):
        pkt.add_attachment(b"\x00")


def test_the_namespace_refuses_a_server_that_mixes_the_doors() -> None:
    with pytest.raises(TypeError, match="ClientEventServer"):
        socketio.AsyncServer(async_mode="aiohttp").register_namespace(_namespace())
    ClientEventServer(async_mode="aiohttp").register_namespace(_namespace())


async def test_only_the_allow_list_passes_the_client_door() -> None:
    ns = _namespace()
    ClientEventServer(async_mode="aiohttp").register_namespace(ns)
    for name in ("connect", "disconnect", "connect_error", "disconnecting"):
        assert await ns.client_event("sid", name, ()) == {
            "ok": False,
            "error": "Reserved event name",
        }
    for name in ("metrics_recent", "on_subscribe", "trigger_event", "close", ""):
        assert await ns.client_event("sid", name, ()) == {"ok": False, "error": "Unknown event"}
    # An allowed name reaches its handler (which finds no such connection here).
    assert await ns.client_event("sid", "subscribe", ({"vmId": "a"},)) == {
        "ok": False,
        "error": "Not connected",
    }
    # And the lifecycle door takes nothing but lifecycle calls.
    assert await ns.trigger_event("subscribe", "sid", {"vmId": "a"}) is ns.server.not_handled
