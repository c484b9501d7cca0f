"""The bridge's settings from the environment: TCP off by default, every limit configurable."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.config import ConfigError, Settings


def test_defaults_keep_tcp_and_vsock_off(tmp_path: Path) -> None:
    s = Settings.from_env({"VMPULSE_DATA_DIR": str(tmp_path)})
    assert (
        s.bridge.tcp_host is None and s.bridge.vsock_port is None and s.bridge.metrics_port is None
    )
    assert s.bridge.max_line == 4 * 1024 * 1024
    assert s.bridge.max_buffer == 8 * 1024 * 1024
    assert s.bridge.idle_timeout_s == 120.0 and s.bridge.max_connections == 10_000


def test_every_agent_setting_is_read(tmp_path: Path) -> None:
    s = Settings.from_env(
        {
            "VMPULSE_DATA_DIR": str(tmp_path),
            "VMPULSE_AGENT_TCP_ADDR": "0.0.0.0:7070",
            "VMPULSE_VSOCK_PORT": "5000",
            "VMPULSE_AGENT_MAX_LINE": "65536",
            "VMPULSE_AGENT_MAX_BUFFER": "131072",
            "VMPULSE_AGENT_IDLE_TIMEOUT_S": "30",
            "VMPULSE_AGENT_MAX_CONNECTIONS": "50",
            "VMPULSE_BRIDGE_METRICS_PORT": "9108",
        }
    )
    assert (s.bridge.tcp_host, s.bridge.tcp_port, s.bridge.vsock_port) == ("0.0.0.0", 7070, 5000)
    assert (s.bridge.max_line, s.bridge.idle_timeout_s, s.bridge.max_connections) == (
        65536,
        30.0,
        50,
    )
    assert s.bridge.metrics_port == 9108
    assert s.bridge.max_buffer == 131072


def test_bad_agent_settings_are_reported_together(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        Settings.from_env(
            {
                "VMPULSE_DATA_DIR": str(tmp_path),
                "VMPULSE_AGENT_TCP_ADDR": "nope",
                "VMPULSE_VSOCK_PORT": "x",
                "VMPULSE_AGENT_MAX_LINE": "10",
                "VMPULSE_AGENT_MAX_BUFFER": "10",
            }
        )
    text = str(err.value)
    for name in (
        "VMPULSE_AGENT_TCP_ADDR",
        "VMPULSE_VSOCK_PORT",
        "VMPULSE_AGENT_MAX_LINE",
        "VMPULSE_AGENT_MAX_BUFFER",
    ):
        assert name in text


def test_receive_buffer_may_not_be_smaller_than_a_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="VMPULSE_AGENT_MAX_BUFFER must be >= "):
        Settings.from_env(
            {
                "VMPULSE_DATA_DIR": str(tmp_path),
                "VMPULSE_AGENT_MAX_LINE": "65536",
                "VMPULSE_AGENT_MAX_BUFFER": "65535",
            }
        )


def test_admission_settings_and_socket_owners(tmp_path: Path) -> None:
    s = Settings.from_env({"VMPULSE_DATA_DIR": str(tmp_path)})
    assert (s.bridge.hello_timeout_s, s.bridge.max_identifying) == (5.0, 256)
    assert (s.bridge.max_identifying_per_peer, s.bridge.max_connections_per_vm) == (8, 4)
    assert s.bridge.socket_owners is None  # the bridge's own user and root
    s = Settings.from_env(
        {
            "VMPULSE_DATA_DIR": str(tmp_path),
            "VMPULSE_AGENT_HELLO_TIMEOUT_S": "1.5",
            "VMPULSE_AGENT_MAX_IDENTIFYING": "32",
            "VMPULSE_AGENT_MAX_IDENTIFYING_PER_PEER": "2",
            "VMPULSE_AGENT_MAX_CONNECTIONS_PER_VM": "1",
            "VMPULSE_SOCKET_OWNER": "root, 64055",
        }
    )
    assert (s.bridge.hello_timeout_s, s.bridge.max_identifying) == (1.5, 32)
    assert (s.bridge.max_identifying_per_peer, s.bridge.max_connections_per_vm) == (2, 1)
    assert s.bridge.socket_owners == frozenset({0, 64055})


def test_an_unknown_socket_owner_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="VMPULSE_SOCKET_OWNER names an unknown user"):
        Settings.from_env(
            {"VMPULSE_DATA_DIR": str(tmp_path), "VMPULSE_SOCKET_OWNER": "no-such-user-here"}
        )
