"""JSON text exactly as libxl prints it (yajl 2 in "beautify" mode, 4-space indent).

Python's json.dumps(indent=4) differs in one visible way that parsers of the
real output stumble over: yajl prints an empty object or array as the
opening bracket, an empty line, then the closing bracket.  Key order is the
caller's (libxl's IDL order), so values are plain dicts built in that order.
"""

from __future__ import annotations

from .fastjson import quote as _string  # json.dumps(s, ensure_ascii=False), without importing json


def dumps(value, indent: int = 0) -> str:
    """The value as yajl beautify prints it, without the trailing newline."""
    out: list[str] = []
    _emit(value, indent, out.append)
    return "".join(out)


def _emit(value, indent: int, put) -> None:
    # One list of pieces joined once (not a string per level): `xl list -l` of a big host prints
    # a lot of JSON, and every simulated xl process pays for it.
    if isinstance(value, dict):
        pad = " " * indent
        if not value:
            put("{\n\n" + pad + "}")
            return
        inner = ",\n" + pad + "    "
        sep = "{\n" + pad + "    "
        for k, v in value.items():
            put(sep)
            put(_string(k))
            put(": ")
            _emit(v, indent + 4, put)
            sep = inner
        put("\n" + pad + "}")
    elif isinstance(value, (list, tuple)):
        pad = " " * indent
        if not value:
            put("[\n\n" + pad + "]")
            return
        inner = ",\n" + pad + "    "
        sep = "[\n" + pad + "    "
        for v in value:
            put(sep)
            _emit(v, indent + 4, put)
            sep = inner
        put("\n" + pad + "]")
    elif isinstance(value, bool):
        put("true" if value else "false")
    elif isinstance(value, int):
        put(str(value))
    elif isinstance(value, float):
        put(repr(value))
    elif value is None:
        put("null")
    else:
        put(_string(str(value)))
