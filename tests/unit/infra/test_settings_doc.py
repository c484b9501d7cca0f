"""The settings table of docs/DEPLOYMENT.md is the one the declarations in infra/config.py make."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from infra import settings_doc
from infra.config import DEV_AGENT_SECRET, DEV_JWT_SECRET, SECRET_VARIABLES, Settings
from infra.kafka_io import durability, topic_configs
from infra.settings_doc import (
    BEGIN,
    END,
    TOPICS_BEGIN,
    TOPICS_END,
    render,
    render_topics,
    replace_block,
    rows,
)
from schemas.topics import Topics
from tests.support.settings import settings_fields


def _fields() -> list[dataclasses.Field[Any]]:
    return [f for f in settings_fields() if "env" in f.metadata]


def test_the_deployment_guide_shows_the_table_the_settings_make() -> None:
    text = settings_doc.DOCUMENT.read_text(encoding="utf-8")
    start, end = text.index(BEGIN), text.index(END) + len(END)
    assert text[start:end] == render(), (
        "docs/DEPLOYMENT.md's settings table differs from infra/config.py: "
        "run `.venv/bin/python -m infra.settings_doc` and commit the result"
    )
    assert settings_doc.main(["--check"]) == 0


def test_the_deployment_guide_shows_the_topics_as_they_are_created() -> None:
    text = settings_doc.DOCUMENT.read_text(encoding="utf-8")
    start, end = text.index(TOPICS_BEGIN), text.index(TOPICS_END) + len(TOPICS_END)
    assert text[start:end] == render_topics(), (
        "docs/DEPLOYMENT.md's topics table differs from infra/kafka_io.py: "
        "run `.venv/bin/python -m infra.settings_doc` and commit the result"
    )
    table = render_topics()
    created = topic_configs(Topics(), durability(3))  # what ensure_topics asks for
    for name, configs in created.items():
        row = next(line for line in table.splitlines() if line.startswith(f"| `{name}` |"))
        assert configs.get("cleanup.policy", "delete") in row
        assert row.endswith("| 1, 1 | 2, 1 | 3, 2 |")  # replicas, in sync: 1, 2, 3+ brokers
    assert len(created) == len(Topics().all()) == 7


def test_every_setting_says_what_it_is_for() -> None:
    by_env: dict[str, list[dataclasses.Field[Any]]] = {}
    for field in _fields():
        by_env.setdefault(field.metadata["env"], []).append(field)
    for env, fields in by_env.items():
        first = fields[0]  # two fields may share a variable (host and port): the first speaks
        assert first.metadata["doc"].strip(), f"{env}: declare it with doc='...'"
        assert "\n" not in first.metadata["doc"], f"{env}: one line"
        if first.metadata["kind"] == "special":
            assert first.metadata["form"], f"{env}: a special setting says its form"


def test_every_variable_has_one_row_in_its_group() -> None:
    found = rows()
    envs = [row.env for row in found]
    assert len(envs) == len(set(envs))
    assert set(envs) == {f.metadata["env"] for f in _fields()}
    groups = {row.env: row.group for row in found}
    assert groups["VMPULSE_PARTITIONS"] == "kafka"
    assert groups["VMPULSE_READ_TIMEOUT_S"] == "reads"
    assert groups["VMPULSE_DATA_DIR"] == "general"
    table = render()
    for row in found:  # each group's heading comes before its rows
        assert table.index(f"#### `{row.group}`") < table.index(f"| `{row.env}` |")


def test_secrets_show_their_file_form_and_never_a_value() -> None:
    files = {row.env: row.secret_file for row in rows()}
    for name in SECRET_VARIABLES:
        assert files[name] == f"{name}_FILE"
    assert files["VMPULSE_PARTITIONS"] == ""
    table = render()
    assert DEV_JWT_SECRET not in table and DEV_AGENT_SECRET not in table


def test_a_default_shown_is_the_default_the_settings_read() -> None:
    # Written back into the environment, the shown default changes nothing.
    base = {"VMPULSE_DATA_DIR": "/tmp/vmpulse-doc"}
    checked = 0
    for row in rows():
        if row.default in ("unset",) or " " in row.default or "<" in row.default:
            continue
        value = "" if row.default == "empty" else row.default
        if row.env == "VMPULSE_DATA_DIR":
            assert Settings.from_env({row.env: value}) == Settings.from_env({}), row
            continue
        assert Settings.from_env({**base, row.env: value}) == Settings.from_env(base), row
        checked += 1
    assert checked > 40


def test_the_block_is_replaced_between_its_markers_only() -> None:
    doc = f"# title\n\nbefore\n{BEGIN}\nold table\n{END}\nafter\n"
    out = replace_block(doc, f"{BEGIN}\nnew\n{END}")
    assert out == f"# title\n\nbefore\n{BEGIN}\nnew\n{END}\nafter\n"
    assert replace_block(out, f"{BEGIN}\nnew\n{END}") == out
    with pytest.raises(ValueError, match="no generated block"):
        replace_block("no markers here", "x")
