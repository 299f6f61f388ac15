"""JSON text exactly as libxl prints it (yajl 2 in "beautify" mode, 4-space indent).

Python's json.dumps(indent=4) differs in one visible way that parsers of the
real output stumble over: yajl prints an empty object or array as the
opening bracket, an empty line, then the closing bracket.  Key order is the
caller's (libxl's IDL order), so values are plain dicts built in that order.
"""

from __future__ import annotations

import json


def _string(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)


def dumps(value, indent: int = 0) -> str:
    """The value as yajl beautify prints it, without the trailing newline."""
    pad = " " * indent
    inner = " " * (indent + 4)
    if isinstance(value, dict):
        if not value:
            return "{\n\n" + pad + "}"
        parts = [f"{inner}{_string(k)}: {dumps(v, indent + 4)}" for k, v in value.items()]
        return "{\n" + ",\n".join(parts) + "\n" + pad + "}"
    if isinstance(value, (list, tuple)):
        if not value:
            return "[\n\n" + pad + "]"
        parts = [f"{inner}{dumps(v, indent + 4)}" for v in value]
        return "[\n" + ",\n".join(parts) + "\n" + pad + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if value is None:
        return "null"
    return _string(str(value))
