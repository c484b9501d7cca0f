"""Socket.IO packets with msgspec's JSON read and write what python-socketio's own do."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from socketio import packet as sio_packet

from gateway.packets import SocketIOPacket

_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.text()
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@given(st.text(min_size=1), _json, st.none() | st.integers(0, 10_000))
def test_events_and_acks_round_trip_like_python_socketio(
    event: str, payload: object, ack_id: int | None
) -> None:
    for kind, data in ((sio_packet.EVENT, [event, payload]), (sio_packet.ACK, [payload])):
        ours = SocketIOPacket(kind, data=data, id=ack_id).encode()
        theirs = sio_packet.Packet(kind, data=data, id=ack_id).encode()
        # The same packet head and the same JSON value (escapes may differ).
        head = len(theirs) - len(json.dumps(data, separators=(",", ":")))
        assert ours[:head] == theirs[:head]
        assert json.loads(ours[head:]) == json.loads(theirs[head:])
        decoded = SocketIOPacket(encoded_packet=theirs)
        reference = sio_packet.Packet(encoded_packet=theirs)
        assert (decoded.packet_type, decoded.id, decoded.data) == (
            reference.packet_type,
            reference.id,
            reference.data,
        )


def test_connect_with_auth_and_namespace() -> None:
    pkt = SocketIOPacket(encoded_packet='0/admin,{"token":"t"}')
    assert (pkt.packet_type, pkt.namespace, pkt.data) == (
        sio_packet.CONNECT,
        "/admin",
        {"token": "t"},
    )


@pytest.mark.parametrize(
    "text", ["2[" + "1" * 101 + "]", '2["x",{"n":' + "9" * 5000 + "}]", "2[oops"]
)
def test_huge_integers_and_broken_json_are_refused_as_value_errors(text: str) -> None:
    with pytest.raises(ValueError):
        SocketIOPacket(encoded_packet=text)


def test_long_digit_strings_and_integers_up_to_100_digits_pass() -> None:
    pkt = SocketIOPacket(encoded_packet='2["x","' + "7" * 300 + '",' + "9" * 100 + "]")
    assert pkt.data == ["x", "7" * 300, int("9" * 100)]
