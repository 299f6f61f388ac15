"""The save directory: image names, confinement, partial saves and the quarantine.

Rules (SEMANTICS §3, §4): an image lives at SAVEDIR/NAME, where NAME is made
safe so that whatever the guest is called ("../etc", "a/b", ".hidden", names
with spaces or unicode) the path stays inside SAVEDIR; a save is written to a
hidden temporary name and renamed on success, so nothing partial ever sits
under a guest's name; an image that fails to restore moves to SAVEDIR/.failed/.
Hidden files are never restored (as with the classic script's glob).
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from urllib.parse import quote, unquote

from .errors import UnsafePathError
from .model import XL_SAVE_MAGIC, XM_SAVE_MAGIC, ImageKind, SaveImage, sniff_image

QUARANTINE = ".failed"
PARTIAL_PREFIX = ".xendomains-partial."


def image_file_name(guest: str) -> str:
    """A file name for guest's image: readable for ordinary names, percent-encoded otherwise."""
    name = quote(guest, safe="-_+@:,=~ ")  # '/', '.', space, unicode … are encoded
    name = name.replace("%2E", ".")  # dots are fine inside a name …
    if name.startswith(".") or not name:
        name = "%2E" + name[1:] if name else "%00"  # … but not as the first character
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


def quarantine(image: Path, save_dir: Path) -> Path:
    """Move a failed image into SAVE/.failed/ (never deleted); returns its new path."""
    qdir = save_dir / QUARANTINE
    qdir.mkdir(mode=0o700, exist_ok=True)
    dest = qdir / image.name
    n = 1
    while dest.exists():
        dest = qdir / f"{image.name}.{n}"
        n += 1
    os.replace(image, dest)
    return dest
