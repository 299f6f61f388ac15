"""The xendomains config file: a shell-style assignment list, parsed — never executed.

The classic script sources `/etc/default/xendomains` with bash, as root, at
boot: whatever the file contains runs.  We read the same files with a small
scanner that understands exactly the shell quoting an administrator writes in
such a file (bare words, "double", 'single', adjacent parts concatenated,
`export`, comments, `$VAR` of keys assigned earlier in the same file) and
nothing more.  Command substitution is kept as literal text and warned about;
the environment is never consulted for `$VAR`.

Bad values never raise: each becomes a `ConfigError` in `Config.problems`
and its key keeps the default, because `stop` must still evacuate guests
with a broken config (SEMANTICS §1).  The CLI decides who refuses.

Everything is bounded, because this runs when a host goes down: the file
is read up to MAX_CONFIG_BYTES without ever blocking (a FIFO or a directory
is refused, not waited on), and a value may grow through `$VAR` expansion
to at most MAX_VALUE_CHARS — the expansion stops there, so `A=x` followed
by forty `A=$A$A` costs kilobytes, not the host's memory — after which it
is a `FILE:LINE: KEY` problem and the key keeps its default.  Bytes that
are not UTF-8 are never silently replaced: inside a key's value they are a
problem naming file and line, elsewhere (a comment) a warning.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shlex
import stat
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ConfigError, ConfigMissing, ConfigUnreadable
from .fsutil import read_at_most

#: a config file larger than this is not a config file (read no further, never parse it)
MAX_CONFIG_BYTES = 1 << 20
#: the longest value (after `$VAR` expansion) a key may have; longer is a FILE:LINE problem
MAX_VALUE_CHARS = 64 * 1024

DEFAULT_SEARCH: tuple[Path, ...] = (
    Path("/etc/sysconfig/xendomains"),  # Oracle VM, RHEL, SUSE
    Path("/etc/default/xendomains"),  # Debian, Ubuntu
)


@dataclass(frozen=True)
class Config:
    """The service's settings, typed, with defaults for every key (SEMANTICS §1)."""

    path: Path | None = None
    sysrq: tuple[str, ...] = ()
    usleep_us: int = 100000
    create_usleep_us: int = 5000000
    migrate: tuple[str, ...] = ()
    save_dir: Path | None = Path("/var/lib/xen/save")
    shutdown: tuple[str, ...] = ("--halt", "--wait")
    shutdown_all: tuple[str, ...] = ("--all", "--halt", "--wait")
    restore: bool = True
    auto_dir: Path | None = Path("/etc/xen/auto")
    auto_only: bool = False
    stop_maxwait: int = 300
    start_maxwait: int = 300
    lockfile: Path | None = None
    toolstack: str = "auto"
    parallel: int = 1  # 0: auto (no overall cap: the per-resource caps decide)
    parallel_migrate: int | None = None  # None: auto (the scheduler's choice)
    parallel_save: int | None = None  # None: auto
    schedule: str = "auto"  # auto: the scheduler orders and caps; listing: listing order, caps as configured
    progress: Path = Path("/run/xendomains/progress.jsonl")
    stop_deadline: float | None = None
    destroy_on_deadline: bool = False
    policy_dir: Path | None = Path("/etc/xen/xendomains.d")
    migrate_targets: tuple[str, ...] = ()
    target_reserve_mib: int = 1024
    problems: tuple[ConfigError, ...] = ()
    warnings: tuple[str, ...] = ()
    #: why the config file could not be read at all (these are then the documented defaults; only stop runs)
    unreadable: str = ""

    def with_overrides(self, **kw: Any) -> "Config":
        """A copy with some fields replaced (command-line options win over the file)."""
        return dataclasses.replace(self, **kw)


# -- the scanner ----------------------------------------------------------------

_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ASSIGN_RE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)=")
_BLANK = " \t"
_DQ_ESCAPABLE = '"\\$`'


@dataclass(frozen=True, slots=True)
class _Assignment:
    key: str
    value: str
    line: int
    too_long: bool = False


class _Bounded:
    """The parts of one value, never longer than MAX_VALUE_CHARS: what overflows is dropped and noted."""

    __slots__ = ("parts", "size", "overflow")

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.size = 0
        self.overflow = False

    def add(self, text: str) -> None:
        room = MAX_VALUE_CHARS - self.size
        if len(text) > room:
            text = text[: max(room, 0)]
            self.overflow = True
        self.parts.append(text)
        self.size += len(text)

    def text(self) -> str:
        return "".join(self.parts)


class _Unterminated(Exception):
    """A quote or substitution left open until the end of the file."""


class _Scanner:
    """Reads statements (lists of shell words) out of the text, tracking line numbers.

    A word is scanned twice in spirit: once for where it ends (quotes,
    escapes) and, for the part after `KEY=`, once more to expand `$VAR`
    — both happen here in a single pass because expansion only needs the
    variables assigned by *earlier* statements.
    """

    def __init__(self, text: str, filename: str, variables: dict[str, str], warn: Callable[[str], None]):
        self.s = text
        self.i = 0
        self.line = 1
        self.filename = filename
        self.vars = variables
        self.warn = warn
        #: variables whose value was cut at MAX_VALUE_CHARS: expanding one overflows too
        self.overlong: set[str] = set()
        #: set while scanning a word whose value overflowed (read by the caller after _word)
        self.overflow = False

    # -- low level

    def _peek(self, k: int = 0) -> str:
        j = self.i + k
        return self.s[j] if j < len(self.s) else ""

    def _next(self) -> str:
        c = self.s[self.i]
        self.i += 1
        if c == "\n":
            self.line += 1
        return c

    def _where(self, line: int) -> str:
        return f"{self.filename}:{line}"

    # -- statements

    def statements(self):
        """Yield (line, words, raw_text) per statement; words are (raw, value, overflowed) triples."""
        while self.i < len(self.s):
            c = self._peek()
            if c in _BLANK or c in "\n;":
                self._next()
                continue
            if c == "#":
                self._skip_comment()
                continue
            start, line = self.i, self.line
            try:
                words = self._statement_words()
            except _Unterminated as exc:
                self.warn(f"{self._where(line)}: {exc.args[0]}; rest of the file ignored")
                return
            yield line, words, self.s[start : self.i].strip()

    def _skip_comment(self) -> None:
        while self.i < len(self.s) and self._peek() != "\n":
            self._next()

    def _statement_words(self) -> list[tuple[str, str, bool]]:
        words: list[tuple[str, str, bool]] = []
        while self.i < len(self.s):
            c = self._peek()
            if c in "\n;":
                break
            if c in _BLANK:
                self._next()
                continue
            if c == "\\" and self._peek(1) == "\n":  # line continuation between words
                self._next()
                self._next()
                continue
            if c == "#":
                self._skip_comment()
                break
            raw, value = self._word()
            words.append((raw, value, self.overflow))
        return words

    # -- words

    def _word(self) -> tuple[str, str]:
        """One shell word: returns (raw text, value with quotes removed and $VAR expanded).

        Expansion is applied only after `NAME=` — exactly the words we use.
        The value is bounded (MAX_VALUE_CHARS); `self.overflow` says it was cut.
        """
        start = self.i
        m = _ASSIGN_RE.match(self.s, self.i)
        prefix = ""
        if m:
            prefix = m.group(0)
            for _ in range(len(prefix)):
                self._next()
        self.overflow = False
        parts = _Bounded()
        while self.i < len(self.s):
            c = self._peek()
            if c in _BLANK or c in "\n;":
                break
            if c == "'":
                parts.add(self._single_quoted())
            elif c == '"':
                parts.add(self._double_quoted())
            elif c == "\\":
                self._next()
                if self.i >= len(self.s):
                    parts.add("\\")
                elif self._peek() == "\n":  # continuation inside a word
                    self._next()
                else:
                    parts.add(self._next())
            elif c == "$":
                parts.add(self._dollar(in_dquote=False))
            elif c == "`":
                parts.add(self._backticks())
            else:
                parts.add(self._next())
        self.overflow = self.overflow or parts.overflow
        return self.s[start : self.i], prefix + parts.text()

    def _single_quoted(self) -> str:
        line = self.line
        self._next()
        out: list[str] = []
        while True:
            if self.i >= len(self.s):
                raise _Unterminated(f"unterminated single quote opened on line {line}")
            c = self._next()
            if c == "'":
                return "".join(out)
            out.append(c)

    def _double_quoted(self) -> str:
        line = self.line
        self._next()
        out = _Bounded()
        while True:
            if self.i >= len(self.s):
                raise _Unterminated(f"unterminated double quote opened on line {line}")
            c = self._peek()
            if c == '"':
                self._next()
                self.overflow = self.overflow or out.overflow
                return out.text()
            if c == "\\":
                nxt = self._peek(1)
                if nxt in _DQ_ESCAPABLE and nxt:
                    self._next()
                    out.add(self._next())
                elif nxt == "\n":
                    self._next()
                    self._next()
                else:
                    out.add(self._next())
            elif c == "$":
                out.add(self._dollar(in_dquote=True))
            elif c == "`":
                out.add(self._backticks())
            else:
                out.add(self._next())

    def _dollar(self, in_dquote: bool) -> str:
        """`$NAME`, `${NAME}`, `${NAME:-word}` from this file's earlier keys; `$(…)` kept literally."""
        line = self.line
        nxt = self._peek(1)
        if nxt == "(":
            start = self.i
            self._next()
            self._skip_balanced("(", ")", line)
            text = self.s[start : self.i]
            self.warn(f"{self._where(line)}: command substitution {text!r} is not executed; kept as literal text")
            return text
        if nxt == "{":
            start = self.i
            self._next()
            self._next()
            while True:
                if self.i >= len(self.s):
                    raise _Unterminated(f"unterminated ${{ opened on line {line}")
                if self._next() == "}":
                    break
            body = self.s[start + 2 : self.i - 1]
            m = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)(?:(:?-)(.*))?", body, re.S)
            if not m:
                self.warn(f"{self._where(line)}: unsupported expansion ${{{body}}} kept as literal text")
                return self.s[start : self.i]
            name, op, default = m.groups()
            if op is not None:
                val = self.vars.get(name)
                if val is None or (op == ":-" and val == ""):
                    return default
                return self._lookup(name, line)
            return self._lookup(name, line)
        m = _NAME_RE.match(self.s, self.i + 1)
        if m:
            for _ in range(len(m.group(0)) + 1):
                self._next()
            return self._lookup(m.group(0), line)
        return self._next()  # a lone `$` (or `$1`, `$$`) stays literal

    def _lookup(self, name: str, line: int) -> str:
        if name in self.vars:
            if name in self.overlong:
                self.overflow = True
            return self.vars[name]
        self.warn(
            f"{self._where(line)}: ${name} is not assigned earlier in this file; "
            "it expands to the empty string (the environment is never read)"
        )
        return ""

    def _backticks(self) -> str:
        line = self.line
        start = self.i
        self._next()
        while True:
            if self.i >= len(self.s):
                raise _Unterminated(f"unterminated backquote opened on line {line}")
            c = self._next()
            if c == "\\" and self.i < len(self.s):
                self._next()
            elif c == "`":
                break
        text = self.s[start : self.i]
        self.warn(f"{self._where(line)}: command substitution {text!r} is not executed; kept as literal text")
        return text

    def _skip_balanced(self, open_: str, close: str, line: int) -> None:
        depth = 0
        quote = ""
        while True:
            if self.i >= len(self.s):
                raise _Unterminated(f"unterminated $( opened on line {line}")
            c = self._next()
            if quote:
                if c == "\\" and quote == '"' and self.i < len(self.s):
                    self._next()
                elif c == quote:
                    quote = ""
            elif c in "'\"":
                quote = c
            elif c == "\\" and self.i < len(self.s):
                self._next()
            elif c == open_:
                depth += 1
            elif c == close:
                depth -= 1
                if depth == 0:
                    return


def _scan(text: str, filename: str) -> tuple[dict[str, _Assignment], list[str]]:
    """All assignments (last one per key wins) and the warnings met on the way."""
    warnings: list[str] = []
    variables: dict[str, str] = {}
    assignments: dict[str, _Assignment] = {}
    scanner = _Scanner(text, filename, variables, warnings.append)
    for line, words, raw in scanner.statements():
        if not words:
            continue
        is_export = words[0][0] == "export"
        body = words[1:] if is_export else words
        if is_export and all(_NAME_RE.fullmatch(w[0]) for w in body):
            continue  # `export A B`: marks variables for the environment, nothing to read
        pending: list[tuple[str, str, bool]] = []
        ok = bool(body)
        for rawword, value, overflow in body:
            m = _ASSIGN_RE.match(rawword)
            if m:
                pending.append((m.group(1), value[len(m.group(0)) :], overflow))
            elif is_export and _NAME_RE.fullmatch(rawword):
                continue
            else:
                ok = False
                break
        if not ok:
            shown = raw if len(raw) <= 60 else raw[:57] + "..."
            warnings.append(f"{filename}:{line}: ignored line: {_shown(shown)}")
            continue
        for key, value, overflow in pending:
            variables[key] = value
            if overflow:
                scanner.overlong.add(key)
            else:
                scanner.overlong.discard(key)
            assignments[key] = _Assignment(key, value, line, overflow)
    return assignments, warnings


def _shown(text: str, limit: int = 60) -> str:
    """Text for a message: bytes that were not UTF-8 as \\xNN, cut to `limit` characters."""
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _has_bad_bytes(text: str) -> bool:
    """True when `text` holds bytes that were not UTF-8 (decoded with surrogateescape)."""
    return _SURROGATE_RE.search(text) is not None


_SURROGATE_RE = re.compile("[\udc80-\udcff]")


# -- typed keys -----------------------------------------------------------------


class _Bad(Exception):
    """A value that does not fit its key: carries the `expected …` wording."""


#: the most guests handled at once (config, --parallel, the control socket's set_parallel)
MAX_PARALLEL = 1024
#: the largest integer any key takes: bounds the digits converted (a 5000-digit value is a problem, not a crash)
_MAX_INT = 10**15


def _int(expected: str, minimum: int = 0, maximum: int = _MAX_INT) -> Callable[[str], int]:
    def conv(v: str) -> int:
        s = v.strip()
        if not re.fullmatch(r"\+?[0-9]{1,24}", s) or not minimum <= int(s) <= maximum:
            raise _Bad(expected)
        return int(s)

    return conv


def _optional_int(expected: str, minimum: int, maximum: int = _MAX_INT) -> Callable[[str], int | None]:
    inner = _int(expected, minimum, maximum)

    def conv(v: str) -> int | None:
        return None if not v.strip() or v.strip().lower() == "auto" else inner(v)

    return conv


def _int_or_auto(expected: str, minimum: int, maximum: int = _MAX_INT) -> Callable[[str], int]:
    """An integer, or `auto` (0)."""
    inner = _int(expected, minimum, maximum)

    def conv(v: str) -> int:
        return 0 if v.strip().lower() == "auto" else inner(v)

    return conv


def _schedule(v: str) -> str:
    s = v.strip().lower()
    if s not in ("auto", "listing"):
        raise _Bad("auto or listing")
    return s


_TRUE = {"true", "yes", "1", "on"}
_FALSE = {"false", "no", "0", "off"}


def _bool(v: str) -> bool:
    s = v.strip().lower()
    if s in _TRUE:
        return True
    if s in _FALSE:
        return False
    raise _Bad("a boolean (true/false, yes/no, 1/0, on/off)")


def _directory_or_none(v: str) -> Path | None:
    s = v.strip()
    if not s:
        return None
    if not s.startswith("/"):
        raise _Bad("an absolute directory path (or empty to disable)")
    return Path(s)


def _path_or_none(v: str) -> Path | None:
    s = v.strip()
    if not s:
        return None
    if not s.startswith("/"):
        raise _Bad("an absolute file path")
    return Path(s)


def _path(v: str) -> Path:
    p = _path_or_none(v)
    if p is None:
        raise _Bad("an absolute file path")
    return p


def _sysrq(v: str) -> tuple[str, ...]:
    keys = tuple(v.split())
    if any(len(k) != 1 for k in keys):
        raise _Bad("SysRq keys, single characters separated by spaces")
    return keys


def _words(v: str) -> tuple[str, ...]:
    return tuple(v.split())


def _shell_words(v: str) -> tuple[str, ...]:
    try:
        return tuple(shlex.split(v, comments=False, posix=True))
    except ValueError:
        raise _Bad("words split like a shell command line (balanced quotes)") from None


def _hosts(v: str) -> tuple[str, ...]:
    hosts = tuple(v.replace(",", " ").split())
    bad = [h for h in hosts if h.startswith("-") or not re.fullmatch(r"[A-Za-z0-9_.:@\[\]-]+", h)]
    if bad:
        raise _Bad("host names separated by spaces (options belong in XENDOMAINS_MIGRATE)")
    return tuple(dict.fromkeys(hosts))


def _toolstack(v: str) -> str:
    s = v.strip().lower()
    if s not in ("auto", "xl", "xm"):
        raise _Bad("one of auto, xl, xm")
    return s


def _seconds_or_none(v: str) -> float | None:
    s = v.strip()
    if not s:
        return None
    try:
        f = float(s)
    except ValueError:
        raise _Bad("a number of seconds") from None
    if not (f >= 0 and f != float("inf")):
        raise _Bad("a number of seconds")
    return f


# key -> (Config field, converter).  The converter raises _Bad with the expectation.
KEYS: dict[str, tuple[str, Callable[[str], Any]]] = {
    "XENDOMAINS_SYSRQ": ("sysrq", _sysrq),
    "XENDOMAINS_USLEEP": ("usleep_us", _int("an integer number of microseconds")),
    "XENDOMAINS_CREATE_USLEEP": ("create_usleep_us", _int("an integer number of microseconds")),
    "XENDOMAINS_MIGRATE": ("migrate", _shell_words),
    "XENDOMAINS_SAVE": ("save_dir", _directory_or_none),
    "XENDOMAINS_SHUTDOWN": ("shutdown", _words),
    "XENDOMAINS_SHUTDOWN_ALL": ("shutdown_all", _words),
    "XENDOMAINS_RESTORE": ("restore", _bool),
    "XENDOMAINS_AUTO": ("auto_dir", _directory_or_none),
    "XENDOMAINS_AUTO_ONLY": ("auto_only", _bool),
    "XENDOMAINS_STOP_MAXWAIT": ("stop_maxwait", _int("an integer number of seconds")),
    "XENDOMAINS_START_MAXWAIT": ("start_maxwait", _int("an integer number of seconds (0: no limit)")),
    "XENDOMAINS_LOCKFILE": ("lockfile", _path_or_none),
    "XENDOMAINS_TOOLSTACK": ("toolstack", _toolstack),
    "XENDOMAINS_PARALLEL": ("parallel", _int_or_auto(f"an integer from 1 to {MAX_PARALLEL}, or auto", 1, MAX_PARALLEL)),
    "XENDOMAINS_PARALLEL_MIGRATE": ("parallel_migrate", _optional_int(
        f"an integer from 1 to {MAX_PARALLEL}, or auto (or empty)", 1, MAX_PARALLEL)),
    "XENDOMAINS_PARALLEL_SAVE": ("parallel_save", _optional_int(
        f"an integer from 1 to {MAX_PARALLEL}, or auto (or empty)", 1, MAX_PARALLEL)),
    "XENDOMAINS_SCHEDULE": ("schedule", _schedule),
    "XENDOMAINS_PROGRESS": ("progress", _path),
    "XENDOMAINS_STOP_DEADLINE": ("stop_deadline", _seconds_or_none),
    "XENDOMAINS_DESTROY_ON_DEADLINE": ("destroy_on_deadline", _bool),
    "XENDOMAINS_POLICY_DIR": ("policy_dir", _directory_or_none),
    "XENDOMAINS_MIGRATE_TARGETS": ("migrate_targets", _hosts),
    "XENDOMAINS_TARGET_RESERVE_MIB": ("target_reserve_mib", _int("an integer number of MiB")),
}

# Keys the xendomains of other distributions use that we accept silently.
_TOLERATED = {"XENDOMAINS_CONFIG"}


def parse_config(text: str, filename: str = "<config>") -> Config:
    """Parse the text of a config file; never raises for anything in `text`.

    `text` may carry bytes that were not UTF-8 as lone surrogates (what
    `decode_config` makes of them); a key whose value holds one is a problem.
    """
    assignments, warnings = _scan(text, filename)
    values: dict[str, Any] = {}
    problems: list[ConfigError] = []
    flagged: set[int] = set()
    for key, a in sorted(assignments.items(), key=lambda kv: kv[1].line):
        if key in KEYS:
            field, conv = KEYS[key]
            if a.too_long:
                problems.append(ConfigError(filename, a.line, key,
                                            f"a value of at most {MAX_VALUE_CHARS} characters after $VAR expansion",
                                            _shown(a.value, 40)))
                continue
            if _has_bad_bytes(a.value):
                flagged.add(a.line)
                problems.append(ConfigError(filename, a.line, key, "UTF-8 text (bytes that are not UTF-8 are shown as \\xNN)",
                                            _shown(a.value)))
                continue
            try:
                values[field] = conv(a.value)
            except _Bad as bad:
                problems.append(ConfigError(filename, a.line, key, bad.args[0], _shown(a.value)))
        elif key.startswith("XENDOMAINS_") and key not in _TOLERATED:
            warnings.append(f"{filename}:{a.line}: unknown key {key}")
    if _has_bad_bytes(text):
        for n, line in enumerate(text.split("\n"), 1):
            if n not in flagged and _has_bad_bytes(line):
                warnings.append(f"{filename}:{n}: bytes that are not UTF-8 (shown as \\xNN), outside any setting: "
                                f"{_shown(line.strip())}")
    path = None if filename.startswith("<") else Path(filename)
    return Config(path=path, problems=tuple(problems), warnings=tuple(warnings), **values)


def find_config(
    explicit: str | None,
    env: Mapping[str, str] = os.environ,
    search: Sequence[Path] = DEFAULT_SEARCH,
) -> Path | None:
    """The config file to read: --config, $XENDOMAINS_CONFIG, then the search order.

    A file named explicitly (option or environment) that does not exist raises
    ConfigMissing naming it; search-order files that do not exist are skipped;
    None when nothing is found.
    """
    for named, how in ((explicit, "--config"), (env.get("XENDOMAINS_CONFIG") or None, "$XENDOMAINS_CONFIG")):
        if named:
            p = Path(named)
            if not os.path.exists(p):
                raise ConfigMissing(f"{p}: config file named by {how} does not exist")
            return p  # whatever it is: read_config_bytes says why it is not a config file
    for p in search:
        if os.path.exists(p):
            return p
    return None


_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


def read_config_bytes(path: Path) -> bytes:
    """The bytes of the config file, never blocking and never more than MAX_CONFIG_BYTES.

    Raises ConfigMissing when it does not exist, ConfigUnreadable when it
    exists but is no regular file (a FIFO is opened non-blocking and never
    read), cannot be read (EACCES, EIO …) or is larger than MAX_CONFIG_BYTES.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except FileNotFoundError:
        raise ConfigMissing(f"{path}: config file does not exist") from None
    except OSError as exc:
        raise ConfigUnreadable(f"{path}: cannot open the config file: {exc.strerror or exc}") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = next((word for test, word in _KINDS if test(mode)), "not a regular file")
            raise ConfigUnreadable(f"{path}: the config file is {kind}, not a regular file")
        data = read_at_most(fd, MAX_CONFIG_BYTES)
        if len(data) > MAX_CONFIG_BYTES:
            raise ConfigUnreadable(f"{path}: the config file is larger than {MAX_CONFIG_BYTES} bytes; not read")
        return data
    except OSError as exc:
        raise ConfigUnreadable(f"{path}: cannot read the config file: {exc.strerror or exc}") from None
    finally:
        os.close(fd)


def decode_config(data: bytes) -> str:
    """Text of the config file; bytes that are not UTF-8 become lone surrogates, never U+FFFD."""
    return data.decode("utf-8", errors="surrogateescape")


def load_config(
    explicit: str | None = None,
    env: Mapping[str, str] = os.environ,
    search: Sequence[Path] = DEFAULT_SEARCH,
) -> Config:
    """Find and parse the config file.

    ConfigMissing when there is none; ConfigUnreadable (a ConfigMissing)
    when the file found cannot be read as one (see read_config_bytes).
    """
    path = find_config(explicit, env, search)
    if path is None:
        raise ConfigMissing("no config file found (looked for " + ", ".join(str(p) for p in search) + ")")
    return parse_config(decode_config(read_config_bytes(path)), str(path))


__all__ = ["Config", "DEFAULT_SEARCH", "KEYS", "MAX_CONFIG_BYTES", "MAX_PARALLEL", "MAX_VALUE_CHARS", "decode_config", "find_config",
           "load_config", "parse_config", "read_config_bytes"]
