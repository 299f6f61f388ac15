"""Per-guest policy: boot order, readiness gates, stop stages, priority and placement.

An administrator writes it into the guest's own xl config file, in keys
`xl` ignores (libxlu stores any `name = value`; xl's parse_config_data reads
only the keys it knows, so unknown ones are silently accepted — see
xen-reference and tests/sim/test_policy_sim.py):

    xendomains_order     = 10          # start in ascending groups, stop in reverse
    xendomains_up_wait   = "ready"     # or "30s": the gate before the next group starts
    xendomains_down_wait = 120         # seconds: this guest's shutdown watchdog
    xendomains_stop      = "migrate, shutdown"   # the stop stages it may use, in order
    xendomains_priority  = 1           # under a stop deadline, higher goes first
    xendomains_ready_key = "data/ready"          # XenStore node under /local/domain/DOMID/
    xendomains_ready_cmd = ["/usr/local/bin/db-ready", "--quiet"]  # argv, no shell
    xendomains_ready_fail = "go"       # a gate that never opens: "go" on, or "wait" (later groups not started)
    xendomains_targets   = ["hostb", "hostc"]    # migration targets this guest may go to
    xendomains_apart     = ["db2"]     # guests to keep on a different target

A guest started without a config file (or whose file is not at hand) gets
its policy from `XENDOMAINS_POLICY_DIR/GUEST` (default /etc/xen/xendomains.d),
written in the same xl syntax; keys there win over the guest's config.

The files are parsed with `xdcore.sim.xlcfg`, the port of libxlu's own
scanner and parser, so a file is read exactly as `xl create` reads it.
Problems never raise: each is a `ConfigError` (FILE:LINE) in
`GuestPolicy.problems`, and the key keeps its default.  `start` refuses a
guest whose policy has problems; `stop` warns and uses the defaults.

Besides the keys, the policy records which domains serve this guest's
devices (`backend=` in its disk/vif/… specs): the boot order puts those
driver domains before their clients.

Everything here is pure apart from reading the two files.
"""

from __future__ import annotations

import difflib
import re
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from .config import MAX_CONFIG_BYTES
from .errors import ConfigError
from .fsutil import read_small_bytes

PREFIX = "xendomains_"
DEFAULT_POLICY_DIR = Path("/etc/xen/xendomains.d")
DEFAULT_READY_KEY = "data/ready"
#: seconds one run of a ready command may take before it is killed (and counted as "not yet")
READY_CMD_TIMEOUT = 10.0
#: the per-guest stop stages a policy may name
STOP_STAGE_NAMES = ("sysrq", "migrate", "save", "shutdown")
#: device specs whose `backend=` names a driver domain (xl.cfg(5))
DEVICE_KEYS = ("disk", "vif", "vtpm", "p9", "pvcalls", "vdispl", "vsnd", "usbctrl", "vkb", "channel")


@dataclass(frozen=True, slots=True)
class Gate:
    """What must happen after a guest is up before the next group starts.

    kind: "none" (nothing: up is enough), "ready" (the guest says so: its
    XenStore ready key, or the admin's ready command exiting 0), "delay"
    (wait `seconds`).
    """

    kind: str = "none"
    seconds: float = 0.0

    def __str__(self) -> str:
        if self.kind == "delay":
            return f"wait {self.seconds:g}s"
        return self.kind


NO_GATE = Gate()


@dataclass(frozen=True)
class GuestPolicy:
    """One guest's policy, read once per run and consulted by plan, scheduler and runner."""

    guest: str
    sources: tuple[str, ...] = ()  # the files it was read from, in reading order
    order: int | None = None
    up_wait: Gate = NO_GATE
    down_wait: float | None = None  # seconds; None: XENDOMAINS_STOP_MAXWAIT
    stop_stages: tuple[str, ...] | None = None  # None: every stage the config enables
    priority: int = 0
    ready_key: str = DEFAULT_READY_KEY
    ready_cmd: tuple[str, ...] = ()
    ready_fail: str = "go"  # "go" | "wait"
    targets: tuple[str, ...] = ()
    apart: tuple[str, ...] = ()
    backends: tuple[str, ...] = ()  # domains serving its devices (names, or domids as text), dom0 left out
    where: Mapping[str, str] = field(default_factory=dict, compare=False)  # key -> "FILE:LINE"
    problems: tuple[ConfigError, ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def is_default(self) -> bool:
        return self == GuestPolicy(self.guest, self.sources, backends=self.backends, where=self.where,
                                   warnings=self.warnings)

    def allows(self, stage: str) -> bool:
        """May this guest go through `stage` on stop?"""
        return self.stop_stages is None or stage in self.stop_stages

    def stop_order(self, enabled: Iterable[str]) -> list[str]:
        """The stop stages this guest goes through, in its order, among those `enabled` (table order)."""
        enabled = list(enabled)
        if self.stop_stages is None:
            return enabled
        return [s for s in self.stop_stages if s in enabled]

    def defaults(self) -> "GuestPolicy":
        """The policy with every key at its default (what `stop` uses when the file has problems)."""
        return GuestPolicy(self.guest, self.sources, backends=self.backends, warnings=self.warnings)

    def describe(self) -> str:
        """One line for plans: the keys that differ from the defaults."""
        parts = []
        if self.order is not None:
            parts.append(f"order {self.order}")
        if self.up_wait.kind != "none":
            parts.append(f"up: {self.up_wait}")
        if self.down_wait is not None:
            parts.append(f"down: {self.down_wait:g}s")
        if self.stop_stages is not None:
            parts.append("stop: " + ", ".join(self.stop_stages))
        if self.priority:
            parts.append(f"priority {self.priority}")
        if self.targets:
            parts.append("targets: " + ", ".join(self.targets))
        if self.apart:
            parts.append("apart from: " + ", ".join(self.apart))
        return "; ".join(parts)


# -- value converters (raise _Bad with the expectation) --------------------------------


class _Bad(Exception):
    pass


_INT_RE = re.compile(r"[+-]?[0-9]+")
_DURATION_RE = re.compile(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m(?!s))?(?:(\d+(?:\.\d+)?)s?)?")
_NAME_RE = re.compile(r"[A-Za-z0-9_.:-]+")
_KEY_RE = re.compile(r"[A-Za-z0-9_@.-]+(?:/[A-Za-z0-9_@.-]+)*")


def _atom(value) -> str:
    if value.is_list:
        raise _Bad("a single value, not a list")
    return value.atom or ""


def _int(value) -> int:
    s = _atom(value).strip()
    if not _INT_RE.fullmatch(s):
        raise _Bad("an integer")
    return int(s)


def parse_duration(text: str) -> float | None:
    """'30', '30s', '2m', '1m30s', '1.5h' -> seconds; None when it is not a duration."""
    s = text.strip().lower()
    if not s:
        return None
    m = _DURATION_RE.fullmatch(s)
    if not m or not any(m.groups()):
        return None
    h, mi, sec = (float(g) if g else 0.0 for g in m.groups())
    return h * 3600 + mi * 60 + sec


def _seconds(value) -> float:
    got = parse_duration(_atom(value))
    if got is None:
        raise _Bad("a number of seconds (e.g. 120, 90s, 2m)")
    return got


def _gate(value) -> Gate:
    s = _atom(value).strip().lower()
    if s in ("", "none", "no", "0"):
        return NO_GATE
    if s == "ready":
        return Gate("ready")
    secs = parse_duration(s)
    if secs is None:
        raise _Bad('"ready" or a duration (e.g. "30s", "2m")')
    return Gate("delay", secs) if secs > 0 else NO_GATE


def _words(value, what: str) -> tuple[str, ...]:
    """A list value, or a single string separated by commas and/or blanks."""
    if value.is_list:
        out = []
        for v in value.items or []:
            if v.is_list:
                raise _Bad(f"{what}: a list of strings, not of lists")
            out.append((v.atom or "").strip())
        words = [w for w in out if w]
    else:
        words = [w for w in re.split(r"[,\s]+", value.atom or "") if w]
    return tuple(words)


def _stages(value) -> tuple[str, ...]:
    words = tuple(w.lower() for w in _words(value, "stages"))
    expected = "stage names among " + ", ".join(STOP_STAGE_NAMES) + ' (e.g. "migrate, shutdown")'
    if not words or any(w not in STOP_STAGE_NAMES for w in words) or len(set(words)) != len(words):
        raise _Bad(expected)
    return words


def _names(value) -> tuple[str, ...]:
    words = _words(value, "names")
    if any(not _NAME_RE.fullmatch(w) for w in words):
        raise _Bad("names (letters, digits, . _ : -) in a list or separated by commas")
    return words


def _ready_key(value) -> str:
    s = _atom(value).strip()
    if not _KEY_RE.fullmatch(s) or any(part in (".", "..") for part in s.split("/")):
        raise _Bad('a XenStore path relative to /local/domain/DOMID (e.g. "data/ready")')
    return s


def _argv(value) -> tuple[str, ...]:
    if value.is_list:
        argv = tuple(_atom(v) for v in value.items or [])
    else:
        try:
            argv = tuple(shlex.split(value.atom or ""))
        except ValueError:
            raise _Bad("a command: a list of words, or words with balanced quotes") from None
    if not argv or not argv[0]:
        raise _Bad('a command (e.g. ["/usr/local/bin/db-ready", "--quiet"])')
    return argv


def _fail_mode(value) -> str:
    s = _atom(value).strip().lower()
    if s not in ("wait", "go"):
        raise _Bad('"wait" or "go"')
    return s


#: key (without the prefix) -> (GuestPolicy field, converter)
KEYS = {
    "order": ("order", _int),
    "up_wait": ("up_wait", _gate),
    "down_wait": ("down_wait", _seconds),
    "stop": ("stop_stages", _stages),
    "priority": ("priority", _int),
    "ready_key": ("ready_key", _ready_key),
    "ready_cmd": ("ready_cmd", _argv),
    "ready_fail": ("ready_fail", _fail_mode),
    "targets": ("targets", _names),
    "apart": ("apart", _names),
}
KNOWN = tuple(PREFIX + k for k in KEYS)


def _shown(value) -> str:
    if value.is_list:
        return "[" + ", ".join(_shown(v) for v in value.items or []) + "]"
    return value.atom or ""


def backends_of(settings: Mapping[str, object]) -> tuple[str, ...]:
    """The backend domains named by `backend=` in the device specs of parsed xl settings.

    Domain 0 ("0", "Domain-0") is left out: it serves everything and is always up.
    """
    out: list[str] = []
    for key in DEVICE_KEYS:
        s = settings.get(key)
        if s is None:
            continue
        value = s.value  # type: ignore[attr-defined]
        specs = [v.atom or "" for v in (value.items or []) if not v.is_list] if value.is_list else [value.atom or ""]
        for spec in specs:
            for word in spec.split(","):
                k, eq, v = word.strip().partition("=")
                if eq and k.strip() == "backend":
                    v = v.strip()
                    if v and v not in ("0", "Domain-0") and v not in out:
                        out.append(v)
    return tuple(out)


# -- reading -------------------------------------------------------------------------


def _parse_file(path: Path, problems: list[ConfigError], warnings: list[str], must_parse: bool):
    """The file's settings (name -> xlcfg.Setting), {} when absent; a parse error is a problem or a warning."""
    from .sim import xlcfg

    try:
        text = read_small_bytes(path, MAX_CONFIG_BYTES).decode("utf-8", errors="replace")  # a FIFO never blocks
    except FileNotFoundError:
        return None
    except OSError as exc:
        problems.append(ConfigError(str(path), 0, "file", "a readable file", exc.strerror or str(exc)))
        return None
    if not must_parse and not has_policy_text(text):
        return {}  # nothing here for us: no xendomains_* key, no backend= (and no parse: 200 configs at boot)
    try:
        return xlcfg.parse(text, str(path)).settings
    except xlcfg.ConfigSyntaxError as exc:
        first = exc.lines[0] if exc.lines else f"{path}: syntax error"
        m = re.match(r"(.*?):(\d+):\s*(.*)", first)
        if must_parse:
            line = int(m.group(2)) if m else 0
            problems.append(ConfigError(str(path), line, "syntax", "the xl config syntax of xl.cfg(5)",
                                        m.group(3) if m else first))
        else:  # the guest's own config: `xl create` reports it when it is created
            warnings.append(f"{first} (policy keys of this file not read)")
        return None


def _apply(guest: str, settings: Mapping, source: str, values: dict, where: dict,
           problems: list[ConfigError]) -> None:
    for name, s in settings.items():
        if not name.startswith(PREFIX):
            continue
        short = name[len(PREFIX):]
        spec = KEYS.get(short)
        if spec is None:
            close = difflib.get_close_matches(name, KNOWN, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            problems.append(ConfigError(source, s.line, name, "a known policy key" + hint + ": " + ", ".join(KNOWN),
                                        _shown(s.value)))
            continue
        fieldname, conv = spec
        try:
            values[fieldname] = conv(s.value)
        except _Bad as bad:
            problems.append(ConfigError(source, s.line, name, bad.args[0], _shown(s.value)))
            values.pop(fieldname, None)
            continue
        where[fieldname] = f"{source}:{s.line}"


def override_path(guest: str, policy_dir: Path | None) -> Path | None:
    """POLICY_DIR/GUEST, or None when there is no directory or the name cannot be a file name."""
    if policy_dir is None or not guest or "/" in guest or guest in (".", "..") or "\0" in guest:
        return None
    return policy_dir / guest


def read_policy(guest: str, config_path: Path | str | None = None, policy_dir: Path | None = DEFAULT_POLICY_DIR) -> GuestPolicy:
    """The policy of `guest` from its config file (if any) and then POLICY_DIR/GUEST (which wins).

    Never raises for anything in the files.
    """
    problems: list[ConfigError] = []
    warnings: list[str] = []
    values: dict = {}
    where: dict = {}
    sources: list[str] = []
    backends: tuple[str, ...] = ()
    if config_path is not None:
        settings = _parse_file(Path(config_path), problems, warnings, must_parse=False)
        if settings is not None:
            sources.append(str(config_path))
            _apply(guest, settings, str(config_path), values, where, problems)
            backends = backends_of(settings)
    over = override_path(guest, policy_dir)
    if over is not None:
        settings = _parse_file(over, problems, warnings, must_parse=True)
        if settings is not None:
            sources.append(str(over))
            _apply(guest, settings, str(over), values, where, problems)
            more = backends_of(settings)
            backends = tuple(dict.fromkeys(backends + more))
    if values.get("apart") and guest in values["apart"]:
        values["apart"] = tuple(n for n in values["apart"] if n != guest)
    return GuestPolicy(guest, tuple(sources), backends=backends, where=where, problems=tuple(problems),
                       warnings=tuple(warnings), **values)


@dataclass(frozen=True)
class Policies:
    """Every guest's policy for one run (read once); unknown guests get the defaults."""

    by_guest: Mapping[str, GuestPolicy] = field(default_factory=dict)
    policy_dir: Path | None = DEFAULT_POLICY_DIR

    def __getitem__(self, guest: str) -> GuestPolicy:
        return self.by_guest.get(guest) or GuestPolicy(guest)

    def get(self, guest: str) -> GuestPolicy:
        return self[guest]

    def __contains__(self, guest: str) -> bool:
        return guest in self.by_guest

    def __iter__(self):
        return iter(self.by_guest)

    def with_defaults_for_problems(self) -> "Policies":
        """What `stop` uses: a guest whose policy has problems gets the defaults."""
        return replace(self, by_guest={n: (p if p.ok else p.defaults()) for n, p in self.by_guest.items()})


def has_policy_text(text: str) -> bool:
    """Could this config hold policy (a xendomains_* key or a backend=)?  A cheap test before parsing."""
    return PREFIX in text or "backend" in text


def policy_configs(paths: Iterable[Path]) -> dict[str, Path]:
    """guest name -> config file, for the files among `paths` that could hold policy (read in-process)."""
    out: dict[str, Path] = {}
    for p in paths:
        try:
            text = p.read_bytes().decode("utf-8", errors="replace")
        except OSError:
            continue
        if has_policy_text(text):
            name = config_name(p)
            if name:
                out.setdefault(name, p)
    return out


def config_name(path: Path | str) -> str | None:
    """The `name =` of an xl config file, read with libxlu's grammar in-process (no `xl create -n`);
    None when the file cannot be read or parsed or names no guest."""
    from .sim import xlcfg

    try:
        text = read_small_bytes(Path(path), MAX_CONFIG_BYTES).decode("utf-8", errors="replace")
        s = xlcfg.parse(text, str(path)).settings.get("name")
    except (OSError, xlcfg.ConfigSyntaxError):
        return None
    if s is None or s.value.is_list or not s.value.atom:
        return None
    return s.value.atom


def load_policies(guests: Mapping[str, Path | str | None], policy_dir: Path | None = DEFAULT_POLICY_DIR) -> Policies:
    """Read the policy of each guest (name -> its config file, or None) once."""
    return Policies({name: read_policy(name, path, policy_dir) for name, path in guests.items()}, policy_dir)


__all__ = [
    "DEFAULT_POLICY_DIR", "DEFAULT_READY_KEY", "Gate", "GuestPolicy", "KEYS", "KNOWN", "NO_GATE", "Policies",
    "READY_CMD_TIMEOUT", "STOP_STAGE_NAMES", "backends_of", "config_name", "has_policy_text", "policy_configs", "load_policies", "override_path", "parse_duration",
    "read_policy",
]
