"""The gateway's reach into python-socketio / python-engineio / aiohttp still holds.

Fails loudly, naming each seam, when an upgrade moves a private method or
attribute that gateway/socketio_internals.py says the gateway relies on.
"""

from __future__ import annotations

import engineio
import socketio

from gateway import socketio_internals as internals
from gateway.dispatch import ClientEventServer
from gateway.server import EngineServer, RoomManager, SocketIOServer


def test_every_seam_holds_in_the_installed_libraries() -> None:
    problems = internals.check()
    assert not problems, (
        f"python-socketio / python-engineio / aiohttp changed under the gateway "
        f"(installed {internals.installed_versions()}, checked against "
        f"{internals.CHECKED_AGAINST}):\n  " + "\n  ".join(problems)
    )


def test_every_private_override_in_the_gateway_is_listed() -> None:
    # An override added without a seam would escape the check above.
    listed = {(seam.owner, seam.name) for seam in internals.SEAMS}
    ours = {
        EngineServer: engineio.AsyncServer,
        SocketIOServer: socketio.AsyncServer,
        ClientEventServer: socketio.AsyncServer,
        RoomManager: socketio.AsyncManager,
    }
    unlisted = [
        f"{cls.__name__}.{name}"
        for cls, base in ours.items()
        for name in vars(cls)
        if name.startswith("_")
        and not name.startswith("__")
        and hasattr(base, name)
        and (base, name) not in listed
    ]
    assert not unlisted, f"private overrides missing from SEAMS: {unlisted}"


def test_a_moved_or_gone_seam_is_reported() -> None:
    moved = internals.Seam(
        socketio.AsyncServer, "_handle_event", "(self, sid, data)", "a test", "a moved seam"
    )
    gone = internals.Seam(socketio.AsyncServer, "_no_such", "(self)", "a test", "a gone seam")
    problems = internals.check([moved, gone])
    assert len(problems) == 2
    assert "_handle_event" in problems[0] and "was (self, sid, data)" in problems[0]
    assert "_no_such is gone" in problems[1]
