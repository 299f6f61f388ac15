"""Which toolstack this host speaks: XENDOMAINS_TOOLSTACK, else xl if on PATH, else xm.

Xen 4.5 removed xend/xm; Oracle VM Server 3 still ships only xm.  Looking
at PATH once at start-up is what an administrator expects ("the one that
is installed"), and forcing one is possible for hosts that carry both.
"""

from __future__ import annotations

import shutil

from ..errors import ToolstackMissing
from .port import Toolstack
from .xl import XlToolstack
from .xm import XmToolstack

_ADAPTERS: dict[str, type[XlToolstack] | type[XmToolstack]] = {"xl": XlToolstack, "xm": XmToolstack}


def choose_toolstack(preference: str = "auto", path: str | None = None) -> Toolstack:
    """The adapter for `preference` ("auto", "xl" or "xm"), looking on `path` (default $PATH).

    Raises ToolstackMissing when the chosen (or, for auto, either) command is
    not found; ValueError for an unknown preference.
    """
    pref = (preference or "auto").strip().lower()
    if pref == "auto":
        for name in ("xl", "xm"):
            if shutil.which(name, path=path):
                return _ADAPTERS[name]()
        raise ToolstackMissing("neither xl nor xm found on PATH")
    if pref not in _ADAPTERS:
        raise ValueError(f"unknown toolstack {preference!r} (expected auto, xl or xm)")
    if not shutil.which(pref, path=path):
        raise ToolstackMissing(f"XENDOMAINS_TOOLSTACK={pref}, but {pref} is not found on PATH")
    return _ADAPTERS[pref]()


__all__ = ["choose_toolstack"]
