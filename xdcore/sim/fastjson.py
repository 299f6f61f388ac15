"""json.loads / json.dumps for the simulated xl's hot path, without importing the json package.

Why: every simulated `xl` process reads and writes the host state as JSON, and
`import json` compiles regular expressions at import time, which pulls in re,
enum, functools and collections: about 7 ms of CPU, a third of what a whole
simulated `xl list` may cost (the real xl starts in a few milliseconds).  The
json package does its work in the C accelerator `_json` anyway; this module
calls the same C scanner and encoder with the arguments json.loads(text) and
json.dumps(value, separators=…) pass them, so the values and texts are
identical (tests/sim/test_fastjson.py compares them).  Where `_json` is
missing (another interpreter) it simply uses the json package.
"""

from __future__ import annotations

try:
    import _json
except ImportError:  # pragma: no cover - CPython always has it
    _json = None

_WHITESPACE = " \t\n\r"


class _DecoderContext:
    """What _json.make_scanner reads from a json.JSONDecoder() with default arguments."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = {"-Infinity": float("-inf"), "Infinity": float("inf"), "NaN": float("nan")}.__getitem__


_scan = _json.make_scanner(_DecoderContext()) if _json is not None else None


def loads(text: str):
    """json.loads(text) for a str; raises ValueError (json.JSONDecodeError) on bad JSON."""
    if _scan is None:  # pragma: no cover
        import json

        return json.loads(text)
    if text.startswith("\ufeff"):
        raise ValueError("Unexpected UTF-8 BOM (decode using utf-8-sig)")
    n = len(text)
    idx = 0
    while idx < n and text[idx] in _WHITESPACE:
        idx += 1
    try:
        value, end = _scan(text, idx)
    except StopIteration as err:
        raise ValueError(f"Expecting value: char {err.value}") from None
    while end < n and text[end] in _WHITESPACE:
        end += 1
    if end != n:
        raise ValueError(f"Extra data: char {end}")
    return value


def _default(o):
    raise TypeError(f"Object of type {o.__class__.__name__} is not JSON serializable")


def dumps_compact(value) -> str:
    """json.dumps(value, separators=(",", ":")): one line, ASCII, no spaces."""
    if _json is None:  # pragma: no cover
        import json

        return json.dumps(value, separators=(",", ":"))
    if isinstance(value, str):
        return _json.encode_basestring_ascii(value)
    encode = _json.make_encoder({}, _default, _json.encode_basestring_ascii, None, ":", ",", False, False, True)
    return "".join(encode(value, 0))


def quote(text: str) -> str:
    """json.dumps(text, ensure_ascii=False): a JSON string literal keeping non-ASCII characters."""
    if _json is None or not isinstance(text, str):  # pragma: no cover - (a non-str: as json does it)
        import json

        return json.dumps(text, ensure_ascii=False)
    return _json.encode_basestring(text)
