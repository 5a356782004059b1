"""JSON from files an attacker may have written (an image's manifest, a status record).

json.loads recurses once per nesting level, so a manifest nested 200 000 deep raises
RecursionError (a traceback) and a merely deep one trips every recursive walk or comparison
made of it later. `loads` refuses nesting deeper than `max_depth` before parsing, as a
ValueError like any other malformed JSON. Standard library only: the loader imports it.
"""

from __future__ import annotations

import json
import re
from typing import Any

MAX_DEPTH = 64
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.S)
_BRACKETS = re.compile(r"[\[\]{}]")


class TooDeep(ValueError):
    """The document nests deeper than allowed."""


def loads(raw: str | bytes, max_depth: int = MAX_DEPTH) -> Any:
    """json.loads for untrusted input: ValueError (never RecursionError) when malformed."""
    text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    depth = 0
    for m in _BRACKETS.finditer(_STRING.sub("", text)):
        if m.group() in "[{":
            depth += 1
            if depth > max_depth:
                raise TooDeep(f"nested deeper than {max_depth} levels")
        else:
            depth -= 1
    return json.loads(text)
