"""The nouns of a Xen host, as frozen values.

Adapters turn toolstack output into these; the pipelines, the printers and
the console only ever see these.  Nothing here does I/O except the small,
pure header sniffing of save images (a file's first bytes).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

XL_SAVE_MAGIC = b"Xen saved domain, xl format\n \0 \r"
XM_SAVE_MAGIC = b"LinuxGuestRecord"
SAVE_HEADCOMP = {"xl": b"Xen saved domain", "xm": XM_SAVE_MAGIC}

DOM0_ID = 0
#: the name `xl list` prints for a domain XenStore has no name for (libxl_domid_to_name gave NULL)
NAMELESS = "(null)"


@dataclass(frozen=True, slots=True)
class DomainState:
    """The six state characters of `xl list` (r b p s <reason> d), decoded.

    `shutdown_reason` is the xl reason letter ('-' poweroff, 'r' reboot,
    's' suspend, 'c' crash, 'w' watchdog, 'S' soft reset, '?') when shut down;
    for xm the fifth column is a plain crashed flag, stored as reason 'c'.
    """

    running: bool = False
    blocked: bool = False
    paused: bool = False
    shutdown: bool = False
    shutdown_reason: str | None = None
    dying: bool = False

    @classmethod
    def from_flags(cls, flags: str) -> "DomainState":
        if len(flags) != 6:
            raise ValueError(f"state must be 6 characters, got {flags!r}")
        r, b, p, s, reason, d = flags
        is_shut = s == "s"
        crashed_only = not is_shut and reason == "c"  # xm: crashed flag
        return cls(
            running=r == "r",
            blocked=b == "b",
            paused=p == "p",
            shutdown=is_shut,
            shutdown_reason=(reason if is_shut else ("c" if crashed_only else None)),
            dying=d == "d",
        )

    @property
    def flags(self) -> str:
        reason = "-"
        if self.shutdown:
            reason = self.shutdown_reason or "-"
        elif self.shutdown_reason == "c":
            reason = "c"
        return "".join(
            (
                "r" if self.running else "-",
                "b" if self.blocked else "-",
                "p" if self.paused else "-",
                "s" if self.shutdown else "-",
                reason,
                "d" if self.dying else "-",
            )
        )

    @property
    def zombie(self) -> bool:
        """Dying: the guest gets no migrate, save or shutdown (SEMANTICS §4)."""
        return self.dying

    @property
    def suspended(self) -> bool:
        """Shut down for suspend (`---ss-`): what `xl save` leaves while it writes, and forever if it dies."""
        return self.shutdown and self.shutdown_reason == "s"

    @property
    def live(self) -> bool:
        """Neither shut down (suspended, crashed, powered off) nor dying: the guest exists and can run.

        A paused guest is live (it runs again when unpaused); a suspended one is
        not — its state is only in memory until a save completes or it is resumed.
        """
        return not self.dying and not self.shutdown

    @property
    def words(self) -> str:
        if self.dying:
            return "dying"
        if self.shutdown:
            return {
                "r": "rebooting",
                "s": "suspended",
                "c": "crashed",
                "w": "watchdog",
                "S": "soft reset",
            }.get(self.shutdown_reason or "-", "shut down")
        if self.shutdown_reason == "c":
            return "crashed"
        if self.paused:
            return "paused"
        if self.running:
            return "running"
        if self.blocked:
            return "blocked"
        return "idle"


@dataclass(frozen=True, slots=True)
class Domain:
    """One domain as the toolstack lists it.

    `state` is None when the toolstack gave no state (e.g. a domain seen only
    in `xl list -l`).  `has_config` is False for a domain that `xl list -l`
    left out (no stored libxl JSON) but `xl list` shows.
    """

    domid: int
    name: str
    uuid: str | None = None
    memory_mib: int = 0
    maxmem_mib: int = 0
    vcpus: int = 0
    cpu_time: float = 0.0
    state: DomainState | None = None
    has_config: bool = True
    domain_type: str | None = None  # pv / pvh / hvm
    #: `xl list` printed "(null)": XenStore no longer holds its name, because libxl removes a domain's
    #: XenStore entries while it destroys it — a domain being torn down (`(null) --ps--` right after a
    #: shutdown, `(null) --p--d` for a zombie), never a running guest, whatever `xl list -l` still says
    nameless: bool = False

    @property
    def is_dom0(self) -> bool:
        return self.domid == DOM0_ID

    @property
    def zombie(self) -> bool:
        """Dying, or nameless (being torn down): it gets no command and never counts as a running guest."""
        return bool(self.state and self.state.dying) or self.nameless

    @property
    def going(self) -> str:
        """Why a zombie is one, in words with its state flags (empty when it is not)."""
        flags = self.state.flags if self.state else ""
        if self.state and self.state.dying:
            return f"dying ({flags})"
        if self.nameless:
            return f"being torn down (listed as {NAMELESS}, {flags})"
        return ""

    @property
    def suspended(self) -> bool:
        return bool(self.state and self.state.suspended)

    @property
    def paused(self) -> bool:
        return bool(self.state and self.state.paused and self.state.live)

    @property
    def powered_off(self) -> bool:
        """Shut down cleanly and still listed as it stopped (`---s--`: reason poweroff; not paused, dying,
        nameless, suspended or crashed): it runs no more, and no toolstack is tearing it down (libxl pauses a
        domain first when it destroys it).  Its `xl create` monitor would have destroyed it at once: a guest
        that stays so has none (real xl's exits when a save suspends the guest)."""
        s = self.state
        return bool(s and s.shutdown and (s.shutdown_reason or "-") == "-" and not s.paused and not s.dying
                    and not self.nameless)

    @property
    def live(self) -> bool:
        """Running, blocked or paused: not suspended, shut down, dying or nameless (no state known: taken as live)."""
        return not self.nameless and (self.state is None or self.state.live)

    @property
    def running(self) -> bool:
        """Live and not paused: what `start` may call "already running"."""
        return self.live and not self.paused


class ImageKind(str, Enum):
    XL = "xl"
    XM = "xm"
    NONE = "none"


def sniff_image(path: str | os.PathLike[str]) -> ImageKind:
    """What kind of save image a file is, from its first 16 bytes (never raises for I/O)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(32)
    except OSError:
        return ImageKind.NONE
    if head.startswith(SAVE_HEADCOMP["xl"]):
        return ImageKind.XL
    if head.startswith(XM_SAVE_MAGIC):
        return ImageKind.XM
    return ImageKind.NONE


@dataclass(frozen=True, slots=True)
class SaveImage:
    """A file in the save directory (or its quarantine)."""

    path: Path
    kind: ImageKind
    size: int
    mtime: float
    guest: str | None = None  # name stored in the image's config, when readable
    quarantined: bool = False

    @property
    def valid(self) -> bool:
        return self.kind is not ImageKind.NONE


@dataclass(frozen=True, slots=True)
class AutoConfig:
    """A config file in the auto directory and the guest name it resolves to."""

    path: Path
    name: str | None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class HostInfo:
    """`xl info`, the figures the console shows."""

    total_memory_mib: int = 0
    free_memory_mib: int = 0
    nr_cpus: int = 0
    xen_version: str = ""
    host: str = ""
    raw: dict[str, str] = field(default_factory=dict, compare=False)

    @property
    def xen_release(self) -> tuple[int, int] | None:
        """(xen_major, xen_minor) as `xl info` says them, else read from xen_version ("4.17.7"); None: unknown."""
        major, minor = self.raw.get("xen_major", "").strip(), self.raw.get("xen_minor", "").strip()
        if major.isdigit() and minor.isdigit():
            return int(major), int(minor)
        m = re.match(r"\s*(\d+)\.(\d+)", self.xen_version)
        return (int(m.group(1)), int(m.group(2))) if m else None
