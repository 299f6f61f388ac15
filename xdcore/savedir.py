"""The save directory: image names, confinement, partial saves and the quarantine.

Rules (SEMANTICS §3, §4): an image lives at SAVEDIR/NAME, where NAME is made
safe so that whatever the guest is called ("../etc", "a/b", ".hidden", names
with spaces or unicode) the path stays inside SAVEDIR; a save is written to a
hidden temporary name and renamed on success, so nothing partial ever sits
under a guest's name; an image that fails to restore moves to SAVEDIR/.failed/.
Hidden files are never restored (as with the classic script's glob).

Crash safety (issue 10): `xl save` may outlive a killed xendomains, or die
with it.  Each save in progress has an entry in a small journal beside the
images (SAVE/.xendomains-journal/, written and fsynced before `xl` starts,
cleared after the rename), and `settle()` decides every entry's and every
partial file's fate from facts once its `xl` is gone:

    guest (by UUID) live            -> xl failed and resumed it: the partial is stale, removed
    guest gone (or dying)           -> xl completed (it destroys only after success): promoted
    guest suspended (`---ss-`)      -> xl died mid-save: the guest is NOT running; the partial
                                       goes to the quarantine, and status/report say so loudly
    anything else, or unknown       -> quarantined, never deleted

Neither name is ever followed if it is a symlink; the image and the
directory are fsynced around the rename.  Names whose encoded form is too
long for the file system get a stable shortened name (a hash suffix); the
guest name is read back from the image header.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote

from .errors import UnsafePathError
from .model import XL_SAVE_MAGIC, XM_SAVE_MAGIC, Domain, ImageKind, SaveImage, sniff_image

QUARANTINE = ".failed"
PARTIAL_PREFIX = ".xendomains-partial."
JOURNAL = ".xendomains-journal"
#: NAME_MAX of Linux file systems, minus the partial prefix: the longest image file name
MAX_IMAGE_NAME = 255 - len(PARTIAL_PREFIX) - len(".json")


def image_file_name(guest: str) -> str:
    """A file name for guest's image: readable for ordinary names, percent-encoded otherwise.

    A name whose encoded form is too long for the file system (with the partial
    prefix) is cut and given a hash of the whole name: stable, unique, and
    mapped back to the guest through the image header.
    """
    name = quote(guest, safe="-_+@:,=~ ")  # '/', '.', space, unicode … are encoded
    name = name.replace("%2E", ".")  # dots are fine inside a name …
    if name.startswith(".") or not name:
        name = "%2E" + name[1:] if name else "%00"  # … but not as the first character
    if len(name.encode()) > MAX_IMAGE_NAME:
        digest = hashlib.sha256(guest.encode("utf-8", "surrogatepass")).hexdigest()[:16]
        keep = MAX_IMAGE_NAME - len(digest) - 1
        cut = name[:keep]
        pct = cut.rfind("%")
        if pct >= 0 and pct > len(cut) - 3:  # never cut inside a %XX escape
            cut = cut[:pct]
        name = f"{cut}~{digest}"
    return name


def guest_of_file_name(file_name: str) -> str:
    return unquote(file_name)


def confined(save_dir: Path, file_name: str) -> Path:
    base = Path(os.path.abspath(save_dir))
    path = Path(os.path.abspath(base / file_name))
    if path.parent != base:
        raise UnsafePathError(f"save path {path} would leave the save directory {base}")
    return path


def image_path(save_dir: Path, guest: str) -> Path:
    return confined(save_dir, image_file_name(guest))


def partial_path(save_dir: Path, guest: str) -> Path:
    return confined(save_dir, PARTIAL_PREFIX + image_file_name(guest))


def ensure_save_dir(save_dir: Path) -> None:
    """mkdir -m 0700 -p (SEMANTICS §4)."""
    save_dir.mkdir(mode=0o700, parents=True, exist_ok=True)


def image_uuid(path: Path) -> str | None:
    """The UUID stored in an xl image's header config (c_info.uuid), or None."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(52)
            if len(head) < 52 or head[:32] != XL_SAVE_MAGIC:
                return None
            fmt = "<" if head[32:36] == b"\x04\x03\x02\x01" else ">"
            (config_len,) = struct.unpack(fmt + "I", head[48:52])
            if not 0 < config_len <= 16 * 1024 * 1024:
                return None
            uuid = json.loads(fh.read(config_len).rstrip(b"\0").decode())["c_info"].get("uuid")
            return str(uuid) if uuid else None
    except (OSError, ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError):
        return None


def image_memory_mib(image: SaveImage) -> int:
    """The guest memory an image holds: its header config's target memory, else the file's size."""
    try:
        with open(image.path, "rb") as fh:
            if image.kind is ImageKind.XL:
                head = fh.read(52)
                if len(head) == 52 and head[:32] == XL_SAVE_MAGIC:
                    fmt = "<" if head[32:36] == b"\x04\x03\x02\x01" else ">"
                    (config_len,) = struct.unpack(fmt + "I", head[48:52])
                    if 0 < config_len <= 16 * 1024 * 1024:
                        b_info = json.loads(fh.read(config_len).rstrip(b"\0").decode())["b_info"]
                        kib = int(b_info.get("target_memkb") or b_info.get("max_memkb") or 0)
                        if kib > 0:
                            return kib // 1024
            elif image.kind is ImageKind.XM:
                head = fh.read(20)
                if len(head) == 20 and head[:16] == XM_SAVE_MAGIC:
                    (n,) = struct.unpack(">i", head[16:20])
                    if 0 < n <= 16 * 1024 * 1024:
                        import re

                        m = re.search(r"\(memory\s+(\d+)\)", fh.read(n).decode(errors="replace"))
                        if m and int(m.group(1)) > 0:
                            return int(m.group(1))
    except (OSError, ValueError, KeyError, TypeError, UnicodeDecodeError, AttributeError):
        pass
    return max(image.size // (1024 * 1024), 1)


def image_guest_name(path: Path, kind: ImageKind | None = None) -> str | None:
    """The guest name stored in an image's header config, or None if unreadable."""
    kind = kind or sniff_image(path)
    try:
        with open(path, "rb") as fh:
            if kind is ImageKind.XL:
                head = fh.read(52)
                if len(head) < 52 or head[:32] != XL_SAVE_MAGIC:
                    return None
                bo = head[32:36]
                fmt = "<" if bo == b"\x04\x03\x02\x01" else ">"
                (config_len,) = struct.unpack(fmt + "I", head[48:52])
                if not 0 < config_len <= 16 * 1024 * 1024:
                    return None
                cfg = fh.read(config_len).rstrip(b"\0")
                return json.loads(cfg.decode())["c_info"]["name"]
            if kind is ImageKind.XM:
                head = fh.read(20)
                if len(head) < 20 or head[:16] != XM_SAVE_MAGIC:
                    return None
                (n,) = struct.unpack(">i", head[16:20])
                if not 0 < n <= 16 * 1024 * 1024:
                    return None
                sxp = fh.read(n).decode(errors="replace")
                import re

                m = re.search(r"\(name\s+('(?:[^'\\]|\\.)*'|[^\s()]+)\)", sxp)
                if not m:
                    return None
                val = m.group(1)
                return val[1:-1] if val.startswith("'") else val
    except (OSError, ValueError, KeyError, TypeError, UnicodeDecodeError):
        return None
    return None


def scan(save_dir: Path | None, quarantine: bool = True) -> list[SaveImage]:
    """Every regular, non-hidden file of the save directory (and the quarantine), sorted by name."""
    if save_dir is None:
        return []
    out: list[SaveImage] = []
    dirs = [(save_dir, False)]
    if quarantine:
        dirs.append((save_dir / QUARANTINE, True))
    for d, q in dirs:
        try:
            entries = sorted(os.scandir(d), key=lambda e: e.name)
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            continue
        for e in entries:
            if e.name.startswith("."):
                continue
            try:
                if not e.is_file(follow_symlinks=False):
                    continue
                st = e.stat(follow_symlinks=False)
            except OSError:
                continue
            path = Path(e.path)
            kind = sniff_image(path)
            guest = image_guest_name(path, kind) if kind is not ImageKind.NONE else None
            out.append(SaveImage(path, kind, st.st_size, st.st_mtime, guest or guest_of_file_name(e.name), q))
    return out


def partial_files(save_dir: Path | None) -> list[Path]:
    if save_dir is None:
        return []
    try:
        return sorted(Path(e.path) for e in os.scandir(save_dir) if e.name.startswith(PARTIAL_PREFIX))
    except OSError:
        return []


def quarantine(image: Path, save_dir: Path, name: str | None = None) -> Path:
    """Move a failed image (or a symlink, never followed) into SAVE/.failed/ (never deleted); its new path."""
    qdir = Path(save_dir) / QUARANTINE
    qdir.mkdir(mode=0o700, exist_ok=True)
    base = name or image.name
    dest = qdir / base
    n = 1
    while os.path.lexists(dest):
        dest = qdir / f"{base}.{n}"
        n += 1
    os.rename(image, dest)
    _fsync_dir(qdir)
    _fsync_dir(Path(image).parent)
    return dest


# -- durability helpers --------------------------------------------------------------------


def _fsync_dir(d: Path) -> None:
    try:
        fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_file(p: Path) -> None:
    """fsync a regular file without following a symlink (raises OSError on a symlink or non-file)."""
    fd = os.open(p, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)  # a FIFO never blocks
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(f"{p} is not a regular file")
        os.fsync(fd)
    finally:
        os.close(fd)


def _is_link_or_odd(p: Path) -> bool:
    try:
        st = os.lstat(p)
    except FileNotFoundError:
        return False
    return not stat.S_ISREG(st.st_mode)


# -- the save journal --------------------------------------------------------------------------


@dataclass(frozen=True)
class SaveEntry:
    """One save in progress, as the journal keeps it."""

    guest: str
    domid: int
    uuid: str | None
    partial: Path
    final: Path
    started: float
    xl_pid: int | None = None
    xl_started: float | None = None  # the xl process's start time: a reused pid is not our xl
    run_pid: int = 0
    path: Path | None = None  # the journal file

    def to_json(self) -> str:
        return json.dumps({"guest": self.guest, "domid": self.domid, "uuid": self.uuid, "partial": str(self.partial),
                           "final": str(self.final), "started": self.started, "xl_pid": self.xl_pid,
                           "xl_started": self.xl_started, "run_pid": self.run_pid}, ensure_ascii=False)

    @property
    def xl_alive(self) -> bool:
        """Is the `xl` of this save still running (same pid and start time)?

        An entry written before xl started and killed before it could note xl's
        pid: any process whose command line names the partial file is its xl;
        a run still alive may be about to spawn it.
        """
        if self.xl_pid:
            return _pid_alive(self.xl_pid, self.xl_started)
        return _writer_of(self.partial) is not None or (_pid_alive(self.run_pid, None) and time.time() - self.started < 60)


def _pid_alive(pid: int, started: float | None) -> bool:
    if pid <= 0:
        return False
    try:
        import psutil

        p = psutil.Process(pid)
        if p.status() == psutil.STATUS_ZOMBIE:
            return False
        return started is None or abs(p.create_time() - started) < 0.5
    except Exception:
        return False


def _writer_of(partial: Path) -> int | None:
    """The pid of a process whose command line names `partial` (an `xl save … PARTIAL`), if any."""
    try:
        import psutil
    except ImportError:  # pragma: no cover
        return None
    want = str(partial)
    for p in psutil.process_iter(["pid", "cmdline"]):
        try:
            if want in (p.info["cmdline"] or ()) and p.status() != psutil.STATUS_ZOMBIE:
                return p.info["pid"]
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return None


def journal_dir(save_dir: Path) -> Path:
    return Path(save_dir) / JOURNAL


def _write_entry(e: SaveEntry) -> SaveEntry:
    assert e.path is not None
    tmp = e.path.with_name(f".{e.path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, (e.to_json() + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, e.path)
    _fsync_dir(e.path.parent)
    return e


def begin_save(save_dir: Path, guest: str, domid: int, uuid: str | None) -> tuple[SaveEntry, list[str]]:
    """Journal a save about to start and create its partial file (O_EXCL, never through a symlink).

    Returns the entry and notes (a symlink or odd file found at the partial or
    image name is moved into the quarantine, never followed).  Raises OSError
    when the journal or the partial file cannot be written.
    """
    ensure_save_dir(save_dir)
    notes: list[str] = []
    final = image_path(save_dir, guest)
    partial = partial_path(save_dir, guest)
    for p in (partial, final):
        if _is_link_or_odd(p):
            dest = quarantine(p, save_dir, name=f"{p.name.lstrip('.')}.not-ours")
            notes.append(f"{p} was not a regular file (a symlink?): moved to {dest}, never followed")
    jdir = journal_dir(save_dir)
    jdir.mkdir(mode=0o700, exist_ok=True)
    entry = SaveEntry(guest, domid, uuid, partial, final, time.time(), run_pid=os.getpid(),
                      path=jdir / (final.name + ".json"))
    _write_entry(entry)
    try:
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except FileExistsError:  # a stale partial settle left (or a save that raced): start it afresh
        os.unlink(partial)
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    os.close(fd)
    _fsync_dir(Path(save_dir))
    return entry, notes


def record_xl(entry: SaveEntry, pid: int) -> SaveEntry:
    """Note xl's pid (and start time) in the entry, durably."""
    started = None
    try:
        import psutil

        started = psutil.Process(pid).create_time()
    except Exception:
        pass
    e = SaveEntry(entry.guest, entry.domid, entry.uuid, entry.partial, entry.final, entry.started, pid, started,
                  entry.run_pid, entry.path)
    try:
        _write_entry(e)
    except OSError:
        pass  # the entry without pid still settles (run pid and age)
    return e


def clear_entry(entry: SaveEntry) -> None:
    if entry.path is None:
        return
    try:
        os.unlink(entry.path)
    except FileNotFoundError:
        pass
    try:
        os.rmdir(entry.path.parent)  # an empty journal leaves nothing behind in the save directory
    except OSError:
        _fsync_dir(entry.path.parent)
    else:
        _fsync_dir(entry.path.parent.parent)


def finish_save(entry: SaveEntry) -> tuple[Path, list[str]]:
    """The save succeeded: fsync the image, rename it to its final name, fsync the directory, clear the entry."""
    notes: list[str] = []
    _fsync_file(entry.partial)
    if _is_link_or_odd(entry.final):
        dest = quarantine(entry.final, entry.partial.parent, name=f"{entry.final.name}.not-ours")
        notes.append(f"{entry.final} was not a regular file (a symlink?): moved to {dest}, never followed")
    os.rename(entry.partial, entry.final)  # rename never follows a symlink at either name
    _fsync_dir(entry.final.parent)
    clear_entry(entry)
    return entry.final, notes


def entries(save_dir: Path | None) -> list[SaveEntry]:
    """The journal's entries (unreadable ones are reported as entries with the guest from the file name)."""
    if save_dir is None:
        return []
    jdir = journal_dir(save_dir)
    out = []
    try:
        names = sorted(os.listdir(jdir))
    except OSError:
        return []
    for n in names:
        if not n.endswith(".json") or n.startswith("."):
            continue
        p = jdir / n
        try:
            fd = os.open(p, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)  # a FIFO never blocks
            try:
                raw = json.loads(os.read(fd, 1 << 16).decode("utf-8", "replace"))
            finally:
                os.close(fd)
            final = Path(raw["final"])
            partial = Path(raw["partial"])
            base = Path(os.path.abspath(save_dir))
            if Path(os.path.abspath(final)).parent != base or Path(os.path.abspath(partial)).parent != base:
                raise ValueError("outside the save directory")
            out.append(SaveEntry(str(raw["guest"]), int(raw.get("domid", -1)), raw.get("uuid"), partial, final,
                                 float(raw.get("started", 0)), raw.get("xl_pid"), raw.get("xl_started"),
                                 int(raw.get("run_pid", 0)), p))
        except (OSError, ValueError, KeyError, TypeError):
            base = n[: -len(".json")]
            out.append(SaveEntry(guest_of_file_name(base), -1, None, partial_path(save_dir, guest_of_file_name(base)),
                                 Path(save_dir) / base, 0.0, None, None, 0, p))
    return out


# -- settling what a killed run left ------------------------------------------------------------------


@dataclass(frozen=True)
class Settled:
    """What settle() did with one journal entry or partial file.

    action: removed (stale: the guest runs), promoted (a completed save, now an
    image), suspended (the guest was left suspended; partial quarantined),
    quarantined (unclear), in-progress (its xl still runs: left alone), cleared
    (an entry with nothing left to decide), failed (could not act: left alone).
    """

    guest: str
    action: str
    path: Path | None
    detail: str

    @property
    def loud(self) -> bool:
        return self.action in ("suspended", "quarantined", "failed")


def _find(domains: Sequence[Domain], guest: str, uuid: str | None) -> Domain | None:
    if uuid:
        hit = next((d for d in domains if d.uuid == uuid), None)
        if hit is not None or any(d.uuid for d in domains):
            return hit
    return next((d for d in domains if d.name == guest), None)


def settle_one(save_dir: Path, guest: str, uuid: str | None, partial: Path, final: Path,
               domains: Sequence[Domain] | None, journaled: bool) -> Settled:
    """Decide one partial save's fate from the domains now (None: the listing failed → unclear)."""
    exists = os.path.lexists(partial)
    if exists and _is_link_or_odd(partial):
        dest = quarantine(partial, save_dir, name=f"{final.name}.not-ours")
        return Settled(guest, "quarantined", dest, f"{partial} was not a regular file: moved to {dest}, never followed")
    dom = _find(domains, guest, uuid) if domains is not None else None
    if not exists:
        if dom is not None and not dom.live and dom.suspended:
            return Settled(guest, "suspended", None, f"{guest} is suspended and its save left no file: it is not running")
        return Settled(guest, "cleared", None, "no partial file left")
    if domains is None:
        dest = quarantine(partial, save_dir, name=final.name)
        return Settled(guest, "quarantined", dest, f"the domains could not be listed: {partial} moved to {dest}")
    if dom is not None and dom.live:
        os.unlink(partial)
        _fsync_dir(Path(save_dir))
        return Settled(guest, "removed", partial, f"{guest} is running: the interrupted save {partial} was stale (removed)")
    if dom is not None and dom.suspended:
        dest = quarantine(partial, save_dir, name=final.name)
        return Settled(guest, "suspended", dest,
                       f"{guest} (domid {dom.domid}) was left SUSPENDED by a save that did not finish: it is NOT running; "
                       f"its incomplete image is kept in {dest}; see `xendomains resume {guest}`")
    if (dom is None or dom.zombie) and journaled:
        if os.path.lexists(final):
            dest = quarantine(partial, save_dir, name=final.name)
            return Settled(guest, "quarantined", dest, f"{guest}: a completed save but {final} exists already: kept in {dest}")
        _fsync_file(partial)
        os.rename(partial, final)
        _fsync_dir(final.parent)
        return Settled(guest, "promoted", final, f"{guest}: the save completed after its run ended: image {final}")
    dest = quarantine(partial, save_dir, name=final.name)
    why = f"{guest} is {dom.state.words if dom and dom.state else 'gone'} and no journal says the save completed"
    return Settled(guest, "quarantined", dest, f"{why}: {partial} kept in {dest}")


def settle(save_dir: Path | None, domains: Sequence[Domain] | None) -> list[Settled]:
    """Settle every journal entry whose xl is gone, and every partial file without an entry."""
    if save_dir is None:
        return []
    out: list[Settled] = []
    busy: set[Path] = set()
    for e in entries(save_dir):
        if e.xl_alive:
            busy.add(Path(os.path.abspath(e.partial)))
            out.append(Settled(e.guest, "in-progress", e.partial, f"xl (pid {e.xl_pid}) is still saving {e.guest} to {e.partial}"))
            continue
        try:
            out.append(settle_one(Path(save_dir), e.guest, e.uuid, e.partial, e.final, domains, journaled=True))
        except OSError as exc:
            out.append(Settled(e.guest, "failed", e.partial, f"cannot settle the save of {e.guest}: {exc}"))
            continue
        clear_entry(e)
        busy.add(Path(os.path.abspath(e.partial)))
    for p in partial_files(save_dir):
        if Path(os.path.abspath(p)) in busy:
            continue
        base = p.name[len(PARTIAL_PREFIX):]
        guest = image_guest_name(p) if not _is_link_or_odd(p) else None
        guest = guest or guest_of_file_name(base)
        try:
            out.append(settle_one(Path(save_dir), guest, None, p, Path(save_dir) / base, domains, journaled=False))
        except OSError as exc:
            out.append(Settled(guest, "failed", p, f"cannot settle {p}: {exc}"))
    return out


def in_progress(save_dir: Path | None) -> list[SaveEntry]:
    return [e for e in entries(save_dir) if e.xl_alive]
