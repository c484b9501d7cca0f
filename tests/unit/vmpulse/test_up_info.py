"""up.json: what `vmpulse up` writes is what every tool reads; a bad file is "no up"."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vmpulse.up_info import UpInfo, read_up_info, remove_up_info, up_info_path, write_up_info


def test_written_record_reads_back_and_is_plain_json(tmp_path: Path) -> None:
    info = UpInfo(
        kafka_bootstrap="127.0.0.1:9092",
        gateway_url="http://127.0.0.1:8080",
        clickhouse_url="chdb:///x",
        socket_dir="/tmp/s",
        topic_prefix="p.",
        pid=1234,
    )
    path = write_up_info(tmp_path, info)
    assert path == up_info_path(tmp_path) == tmp_path / "up.json"
    assert read_up_info(tmp_path) == info
    assert list(json.loads(path.read_text())) == [
        "kafka_bootstrap",
        "gateway_url",
        "clickhouse_url",
        "socket_dir",
        "topic_prefix",
        "pid",
    ]


@pytest.mark.parametrize("content", [None, b"", b"not json", b"[1, 2]", b'{"kafka_bootstrap": 5}'])
def test_missing_or_malformed_file_is_no_running_up(tmp_path: Path, content: bytes | None) -> None:
    if content is not None:
        (tmp_path / "up.json").write_bytes(content)
    assert read_up_info(tmp_path) is None


def test_fields_a_newer_up_adds_are_ignored(tmp_path: Path) -> None:
    (tmp_path / "up.json").write_text('{"kafka_bootstrap": "b:1", "extra": true}')
    info = read_up_info(tmp_path)
    assert info is not None and info.kafka_bootstrap == "b:1" and info.topic_prefix == ""


def test_up_removes_only_the_record_it_wrote(tmp_path: Path) -> None:
    write_up_info(tmp_path, UpInfo(gateway_url="http://127.0.0.1:1", pid=1234))
    remove_up_info(tmp_path, 999)  # another up's: kept
    assert read_up_info(tmp_path) is not None
    remove_up_info(tmp_path, 1234)
    assert not up_info_path(tmp_path).exists()
    remove_up_info(tmp_path, 1234)  # gone already: nothing to do
