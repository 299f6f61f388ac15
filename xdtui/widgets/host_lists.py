"""The auto directory and the save directory as small keyed tables (diffed like the domains)."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable

from xdcore.model import AutoConfig, SaveImage

from ..formatting import age, size
from .cells import KeyedTable, Spec


class AutoList(KeyedTable):
    """Each config file of the auto directory, the guest it names, and whether that guest runs."""

    COLUMNS = (("guest", "Guest", None), ("up", "Up", 2), ("file", "Config", None))
    DEFAULT_CSS = """
    AutoList { height: 1fr; scrollbar-size-vertical: 1; overflow-x: hidden; }
    """

    def on_mount(self) -> None:
        self.set_columns(self.COLUMNS)

    def show(self, autos: Iterable[AutoConfig], running: Collection[str]) -> None:
        want: dict[str, tuple[Spec, ...]] = {}
        for a in autos:
            if a.name is None:
                want[str(a.path)] = (("?", "red"), ("err", "red"), (a.path.name, "red"))
            else:
                up = a.name in running
                want[str(a.path)] = ((a.name, ""), ("●" if up else "○", "green" if up else "dim"), (a.path.name, "dim"))
        self.apply_rows(want)


class SavedList(KeyedTable):
    """Each image of the save directory: guest, size, age, valid header or not (quarantine marked)."""

    COLUMNS = (("guest", "Guest", None), ("size", "Size", 5), ("age", "Age", 4), ("ok", "Hdr", 3))
    DEFAULT_CSS = """
    SavedList { height: 1fr; scrollbar-size-vertical: 1; overflow-x: hidden; }
    """

    def on_mount(self) -> None:
        self.set_columns(self.COLUMNS)

    def show(self, images: Iterable[SaveImage], now: Callable[[], float]) -> None:
        t = now()
        want: dict[str, tuple[Spec, ...]] = {}
        for im in images:
            name = im.guest or im.path.name
            if im.quarantined:
                name = "⚠ " + name
            ok = (im.kind.value, "green") if im.valid else ("bad", "red")
            want[str(im.path)] = ((name, "red" if im.quarantined else ""), (size(im.size), ""), (age(im.mtime, t), "dim"), ok)
        self.apply_rows(want)
