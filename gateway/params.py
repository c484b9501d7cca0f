"""The HTTP API's query parameters: declared once, parsed strictly, documented from the same place.

Each parameter is a small declaration (name, bounds, default, description)
that both parses a request and writes its part of the OpenAPI document
(gateway/openapi.py), so the document cannot promise what the parser refuses.

Strict means: a parameter appears at most once; a given parameter is never
empty; whole numbers are ASCII digits only and bounded in length before
``int()`` sees them. ``str.isdigit()`` is true for ``²`` and other unicode
digits that ``int()`` refuses, and ``int()`` of a 5,000-digit string raises
past Python's conversion limit: both used to answer 500. Every refusal is a
:class:`ParamError` whose message the API returns with a 400.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from multidict import MultiMapping

__all__ = [
    "HISTORY_FROM",
    "HISTORY_STEP",
    "HISTORY_TO",
    "MAX_TIME_LENGTH",
    "RECENT_COUNT",
    "ParamError",
    "TextParam",
    "WholeNumber",
    "single",
]

MAX_TIME_LENGTH = 64
"""Longer than any ISO 8601 time with offset and fraction; a longer value is not a time."""


class ParamError(ValueError):
    """A request parameter is missing, repeated or not what its declaration allows."""


def single(query: MultiMapping[str], name: str) -> str | None:
    """The one value of ``name``, or None when absent; refused when repeated."""
    values = query.getall(name, [])
    if len(values) > 1:
        raise ParamError(f"'{name}' given more than once")
    return values[0] if values else None


@dataclasses.dataclass(frozen=True, slots=True)
class WholeNumber:
    """An integer query parameter within ``[minimum, maximum]``."""

    name: str
    minimum: int
    maximum: int
    default: int | None
    description: str

    def parse(self, query: MultiMapping[str]) -> int | None:
        return self.convert(single(query, self.name))

    def convert(self, text: str | None) -> int | None:
        """``text`` as a number in bounds; None (absent) gives the default."""
        if text is None:
            return self.default
        refusal = ParamError(
            f"'{self.name}' must be a whole number from {self.minimum} to {self.maximum}"
        )
        # Bounded before int(): no 5,000-digit conversions, no unicode digits.
        if not 0 < len(text) <= len(str(self.maximum)) + 2:
            raise refusal
        if not (text.isascii() and text.isdigit()):
            raise refusal
        value = int(text)
        if not self.minimum <= value <= self.maximum:
            raise refusal
        return value

    def openapi(self) -> dict[str, Any]:
        schema: dict[str, Any] = {
            "type": "integer",
            "minimum": self.minimum,
            "maximum": self.maximum,
        }
        if self.default is not None:
            schema["default"] = self.default
        return _parameter(self.name, self.description, schema)


@dataclasses.dataclass(frozen=True, slots=True)
class TextParam:
    """A string query parameter: non-empty printable ASCII, at most ``max_length`` characters.

    Its meaning (a time, for instance) is parsed by the handler; this bounds
    what reaches that parser.
    """

    name: str
    max_length: int
    description: str
    example: str

    def get(self, query: MultiMapping[str]) -> str | None:
        text = single(query, self.name)
        if text is None:
            return None
        if not 0 < len(text) <= self.max_length or not all(" " <= c <= "~" for c in text):
            raise ParamError(
                f"'{self.name}' must be 1 to {self.max_length} printable ASCII characters"
            )
        return text

    def openapi(self) -> dict[str, Any]:
        schema = {
            "type": "string",
            "minLength": 1,
            "maxLength": self.max_length,
            "pattern": "^[ -~]+$",  # printable ASCII, what get() lets through
            "examples": [self.example],
        }
        return _parameter(self.name, self.description, schema)


def _parameter(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema,
    }


RECENT_COUNT = WholeNumber(
    "count",
    minimum=1,
    maximum=10_000,
    default=10,
    description="How many of the latest samples to return (oldest first).",
)
HISTORY_FROM = TextParam(
    "from",
    MAX_TIME_LENGTH,
    "Start of the range: ISO 8601 (`Z` or an offset; no offset means UTC) or epoch "
    "seconds (ASCII digits, optional fraction), between 1970 and 9000. Default: one hour "
    "before `to`.",
    "2026-01-01T00:00:00Z",
)
HISTORY_TO = TextParam(
    "to",
    MAX_TIME_LENGTH,
    "End of the range, as `from`. Default: now.",
    "2026-01-01T06:00:00Z",
)
HISTORY_STEP = WholeNumber(
    "step",
    minimum=1,
    maximum=31 * 86400,
    default=None,
    description="Bucket width in seconds. Default: the table's resolution; it grows so that "
    "no answer has more than 10,000 rows.",
)
