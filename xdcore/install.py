"""`xendomains install`: write the systemd unit or the SysV init script.

Two facts drive this module.  First, systemd stops a unit after 90 s by
default, which kills a long `xl save` half way; the unit's timeouts are
therefore computed from the config (`compute_timeouts`, the formula is
written into the unit's comment).  Second, these files live in /etc, where
administrators edit them: every file we write carries a header line
`# xendomains-install: sha256=…` — the digest of the rest of the file — so a
re-run with the same inputs says "unchanged", a file still as we wrote it is
updated, and a file someone changed (or one we never wrote, like the init
script Xen ships) is refused unless `--force`.

Templates are package data (`xdcore/data/*.in`) with `@NAME@` placeholders.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import shlex
import shutil
import sys
import sysconfig
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from .config import Config
from .fsutil import write_atomic

#: where each kind goes, relative to the prefix (the administrator's location, not the package's)
UNIT_PATH = Path("etc/systemd/system/xendomains.service")
INIT_PATH = Path("etc/init.d/xendomains")

#: guests assumed when the auto directory lists fewer (stop evacuates every running guest, not only those)
DEFAULT_GUESTS = 16
#: room for select, the lock, xenstored being slow … on top of the computed bounds
MARGIN_S = 120
#: the largest number of seconds systemd parses (it refuses s >= USEC_INFINITY / 10**6, see
#: `systemd-analyze timespan`); beyond it a unit's timeout is rejected and systemd silently falls
#: back to its 90 s default — so anything larger is written as infinity
SYSTEMD_MAX_TIMEOUT_S = (2**64 - 1) // 10**6 - 1

_HEADER_PENDING = "xendomains-install: sha256=PENDING"
_HEADER_RE = re.compile(r"^# xendomains-install: sha256=([0-9a-f]{64}|PENDING)\n", re.M)


@dataclass(frozen=True)
class Timeouts:
    """systemd timeouts in seconds (None: infinity) and, for the unit's comment, how they were computed."""

    stop: int | None
    start: int | None
    stop_formula: str
    start_formula: str

    @staticmethod
    def systemd(value: int | None) -> str:
        return "infinity" if value is None else f"{value}s"


@dataclass(frozen=True)
class InstallResult:
    """What `install` did with one file: installed / updated / unchanged / replaced / refused."""

    path: Path
    action: str
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.action != "refused"


def count_guests(cfg: Config) -> int:
    """The guest count the timeouts assume: the auto directory's entries, at least DEFAULT_GUESTS."""
    n = 0
    if cfg.auto_dir is not None:
        try:
            n = sum(1 for e in os.scandir(cfg.auto_dir) if not e.name.startswith("."))
        except OSError:
            n = 0
    return max(n, DEFAULT_GUESTS)


def compute_timeouts(cfg: Config, guests: int) -> Timeouts:
    """TimeoutStopSec / TimeoutStartSec for `guests` guests under `cfg`.

    stop:  XENDOMAINS_STOP_DEADLINE + margin when a deadline is set (the run
           downgrades stages to meet it); else every guest may spend
           STOP_MAXWAIT in each watchdog stage it goes through (migrate, save,
           shutdown), guests run in batches of the smallest parallelism that
           applies, then shutdown-all may take STOP_MAXWAIT once more.
           STOP_MAXWAIT=0 turns the watchdog off: there is no bound, infinity.
    start: restores and creates have no watchdog; each guest is budgeted
           one STOP_MAXWAIT (a restore reads what a save wrote in at most
           that) plus XENDOMAINS_CREATE_USLEEP, in batches of PARALLEL.
    """
    guests = max(1, guests)
    maxwait = cfg.stop_maxwait
    caps = [cfg.parallel] + [c for c in (cfg.parallel_migrate if cfg.migrate else None,
                                         cfg.parallel_save if cfg.save_dir else None) if c]
    par = max(1, min(caps))
    batches = math.ceil(guests / par)
    if cfg.stop_deadline:
        stop: int | None = math.ceil(cfg.stop_deadline) + MARGIN_S
        stop_f = f"XENDOMAINS_STOP_DEADLINE {cfg.stop_deadline:g} s + {MARGIN_S} s margin = {stop} s"
    elif maxwait <= 0:
        stop = None
        stop_f = "infinity: XENDOMAINS_STOP_MAXWAIT=0 turns the watchdog off, so no bound exists (set XENDOMAINS_STOP_DEADLINE)"
    else:
        stages = [n for n, on in (("migrate", bool(cfg.migrate)), ("save", cfg.save_dir is not None),
                                  ("shutdown", bool(cfg.shutdown))) if on]
        sysrq = math.ceil(len(cfg.sysrq) * cfg.usleep_us / 1e6)
        per_guest = len(stages) * maxwait + sysrq
        tail = maxwait if cfg.shutdown_all else 0
        stop = batches * per_guest + tail + MARGIN_S
        stop_f = (f"ceil({guests} guests / {par} at a time) = {batches} batches"
                  f" x ({len(stages)} watchdog stages ({', '.join(stages) or 'none'}) x {maxwait} s STOP_MAXWAIT"
                  + (f" + {sysrq} s SysRq" if sysrq else "") + ")"
                  + f" + {tail} s shutdown-all + {MARGIN_S} s margin = {stop} s")
    if maxwait <= 0:
        start: int | None = None
        start_f = "infinity: XENDOMAINS_STOP_MAXWAIT=0, no per-guest budget to add up"
    else:
        spb = max(1, cfg.parallel)
        sb = math.ceil(guests / spb)
        usleep = math.ceil(cfg.create_usleep_us / 1e6)
        start = sb * (maxwait + usleep) + MARGIN_S
        start_f = (f"ceil({guests} guests / {spb} at a time) = {sb} batches x ({maxwait} s STOP_MAXWAIT per restore"
                   f" or create + {usleep} s CREATE_USLEEP) + {MARGIN_S} s margin = {start} s")
    stop, stop_f = _clamped(stop, stop_f)
    start, start_f = _clamped(start, start_f)
    return Timeouts(stop, start, stop_f, start_f)


def _clamped(value: int | None, formula: str) -> tuple[int | None, str]:
    """Infinity for a bound systemd cannot parse (it would ignore it and use 90 s)."""
    if value is None or value <= SYSTEMD_MAX_TIMEOUT_S:
        return value, formula
    return None, f"{formula}: beyond the largest timeout systemd accepts ({SYSTEMD_MAX_TIMEOUT_S} s), so infinity"


class UnsafeInstallPath(ValueError):
    """A path for the installed files holds a control character (a newline would become unit directives)."""


def check_install_path(what: str, path: str | os.PathLike[str]) -> None:
    """Refuse control characters (newline, tab, escape …) in a path written into the unit or init script."""
    text = os.fspath(path)
    bad = sorted({c for c in text if ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F or c in "\u2028\u2029"})
    if bad:
        shown = ", ".join(repr(c) for c in bad)
        raise UnsafeInstallPath(f"{what} {text!r} holds control characters ({shown}); refusing to write it into "
                                "the unit or init script, where a newline would become a directive of its own")


# -- rendering ---------------------------------------------------------------------


def find_executable() -> list[str]:
    """The command that runs xendomains, as an absolute path that works without our PATH.

    The console script of this interpreter's installation first (not a
    wrapper such as a pyenv shim found on PATH), then PATH, then this Python
    with -m.
    """
    for d in (sysconfig.get_path("scripts"), os.path.dirname(sys.executable)):
        p = os.path.join(d, "xendomains") if d else ""
        if p and os.access(p, os.X_OK) and os.path.isfile(p):
            return [os.path.abspath(p)]
    exe = shutil.which("xendomains")
    if exe:
        return [os.path.abspath(exe)]
    return [os.path.abspath(sys.executable), "-m", "xdcore.cli"]


def _systemd_quote(word: str) -> str:
    word = word.replace("%", "%%").replace("$", "$$")
    if re.fullmatch(r"[A-Za-z0-9_@%+=:,./-]+", word):
        return word
    return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _template(name: str) -> str:
    return resources.files("xdcore").joinpath("data", name).read_text(encoding="utf-8")


def _fill(text: str, values: dict[str, str]) -> str:
    for k, v in values.items():
        text = text.replace(f"@{k}@", v)
    left = re.findall(r"@[A-Z_]+@", text)
    if left:
        raise ValueError(f"template placeholders left unfilled: {', '.join(sorted(set(left)))}")
    return text


def _canonical(text: str) -> str:
    """The file without its header line: what the digest covers."""
    return _HEADER_RE.sub("", text, count=1)


def digest(text: str) -> str:
    return hashlib.sha256(_canonical(text).encode("utf-8")).hexdigest()


def _seal(text: str) -> str:
    return text.replace(_HEADER_PENDING, f"xendomains-install: sha256={digest(text)}", 1)


def written_by_us(text: str) -> bool:
    """True when `text` carries our header and is exactly what we wrote (nobody edited it since)."""
    m = _HEADER_RE.search(text)
    return bool(m) and m.group(1) == digest(text)


def _command(exe: Sequence[str], config: Path | None) -> list[str]:
    return [*exe, *(["--config", str(config)] if config else [])]


def render_unit(cfg: Config, exe: Sequence[str], config: Path | None, guests: int) -> str:
    t = compute_timeouts(cfg, guests)
    return _seal(_fill(_template("xendomains.service.in"), {
        "HEADER": _HEADER_PENDING,
        "CONFIG": str(config or cfg.path or "the default config"),
        "GUESTS": str(guests),
        "STOP_FORMULA": t.stop_formula,
        "START_FORMULA": t.start_formula,
        "EXEC": " ".join(_systemd_quote(w) for w in _command(exe, config)),
        "TIMEOUT_STOP": Timeouts.systemd(t.stop),
        "TIMEOUT_START": Timeouts.systemd(t.start),
    }))


def render_init_script(exe: Sequence[str], config: Path | None) -> str:
    return _seal(_fill(_template("xendomains.init.in"), {
        "HEADER": _HEADER_PENDING,
        "EXEC": " ".join(shlex.quote(w) for w in _command(exe, config)),
    }))


# -- writing -----------------------------------------------------------------------


def write_file(path: Path, text: str, mode: int, force: bool = False) -> InstallResult:
    """Write `text` to `path` unless an administrator changed what is there; atomic, idempotent."""
    try:
        old: str | None = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        old = None
    except IsADirectoryError:
        return InstallResult(path, "refused", f"{path} is a directory")
    if old is not None and old == text and not path.is_symlink():
        if (path.stat().st_mode & 0o7777) != mode:
            os.chmod(path, mode)
        return InstallResult(path, "unchanged")
    if old is None:
        action, detail = "installed", ""
    elif written_by_us(old) and not path.is_symlink():
        action, detail = "updated", ""
    elif not force:
        why = "is a symlink (masked?)" if path.is_symlink() else (
            "was changed since xendomains wrote it" if _HEADER_RE.search(old) else "was not written by xendomains install")
        return InstallResult(path, "refused", f"{path} {why}; not overwritten (use --force to replace it)")
    else:
        action, detail = "replaced", "--force: the previous content is gone"
    write_atomic(path, text, mode, tag="xendomains-install")
    return InstallResult(path, action, detail)


def default_kind(root: Path = Path("/")) -> str:
    """systemd when it is the running init (sd_booted's test), else sysv."""
    return "systemd" if (root / "run/systemd/system").is_dir() else "sysv"


def install(kind: str, cfg: Config, *, prefix: Path = Path("/"), config: Path | None = None,
            exe: Sequence[str] | None = None, guests: int | None = None, force: bool = False) -> list[InstallResult]:
    """Write the unit (kind "systemd") or the init script (kind "sysv") under `prefix`.

    `config`: the config file named on the command line, written into the
    command line of the service (None: the service uses the search order).
    """
    exe = list(exe) if exe else find_executable()
    check_install_path("--prefix", prefix)
    for what, p in (("--config", config), ("the config path", cfg.path)):
        if p is not None:
            check_install_path(what, p)
    for word in exe:
        check_install_path("the xendomains executable", word)
    if kind == "systemd":
        n = guests if guests is not None else count_guests(cfg)
        return [write_file(prefix / UNIT_PATH, render_unit(cfg, exe, config, n), 0o644, force)]
    if kind == "sysv":
        return [write_file(prefix / INIT_PATH, render_init_script(exe, config), 0o755, force)]
    raise ValueError(f"unknown init system {kind!r} (systemd or sysv)")


def next_steps(kind: str, prefix: Path = Path("/")) -> list[str]:
    """What to run after installing `kind` (on the system that boots from `prefix`)."""
    if kind == "systemd":
        return ["systemctl daemon-reload", "systemctl enable xendomains"]
    return ["update-rc.d xendomains defaults   # Debian, Ubuntu",
            "chkconfig --add xendomains && chkconfig xendomains on   # RHEL, Oracle VM, SUSE"]


__all__ = ["InstallResult", "SYSTEMD_MAX_TIMEOUT_S", "Timeouts", "UnsafeInstallPath", "check_install_path", "compute_timeouts", "count_guests", "default_kind", "digest",
           "find_executable", "install", "next_steps", "render_init_script", "render_unit", "write_file", "written_by_us"]
