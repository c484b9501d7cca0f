"""The settings' fields, walked once for the tests that check them against the code and docs."""

from __future__ import annotations

import dataclasses
from typing import Any

from infra.config import Settings


def settings_fields() -> list[dataclasses.Field[Any]]:
    """Every field of the settings and of their groups (a group is a nested dataclass)."""
    defaults = Settings()
    found = list(dataclasses.fields(Settings))
    for f in dataclasses.fields(Settings):
        group = getattr(defaults, f.name)
        if dataclasses.is_dataclass(group):
            found += dataclasses.fields(group)
    return found
