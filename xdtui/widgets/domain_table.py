"""The live domains, keyed by guest name, updated by diff (only changed cells, one sort)."""

from __future__ import annotations

from collections.abc import Collection, Iterable


from xdcore.model import Domain

from ..formatting import duration, mib
from .cells import KeyedTable, Spec

COLUMNS = (("name", "Name", None), ("id", "ID", 3), ("state", "State", 9), ("mem", "Mem", 5), ("vcpus", "vCPU", 4),
           ("cpu", "CPU", 6), ("auto", "Auto", 4), ("saved", "Img", 3))

_STATE_STYLE = {"running": "green", "blocked": "", "paused": "yellow", "idle": "", "dying": "magenta",
                "shut down": "red", "crashed": "bold red", "rebooting": "yellow", "suspended": "yellow"}


def row_specs(d: Domain, in_auto: bool, has_image: bool, marked: bool) -> tuple[Spec, ...]:
    words = d.state.words if d.state else "?"
    return (
        (("✓ " if marked else "  ") + d.name, "bold" if marked else ""),
        (str(d.domid), ""),
        (words, _STATE_STYLE.get(words, "")),
        (mib(d.memory_mib), ""),
        (str(d.vcpus) if d.vcpus else "-", ""),
        (duration(d.cpu_time), ""),
        ("auto" if in_auto else "-", "cyan" if in_auto else "dim"),
        ("img" if has_image else "-", "yellow" if has_image else "dim"),
    )


class DomainTable(KeyedTable):
    """Guests on this host (dom0 left out); changes only what differs, sorts by domid when rows come or go."""

    DEFAULT_CSS = """
    DomainTable { height: 1fr; scrollbar-size-vertical: 1; }
    """

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self._domains: dict[str, Domain] = {}
        self.auto_names: frozenset[str] = frozenset()
        self.saved_names: frozenset[str] = frozenset()
        self.marked: set[str] = set()
        self._spec_cache: dict[str, tuple[tuple, tuple[Spec, ...]]] = {}

    def on_mount(self) -> None:
        self.set_columns(COLUMNS)

    # -- data --------------------------------------------------------------------------

    def set_domains(self, domains: Iterable[Domain]) -> None:
        self._domains = {d.name: d for d in domains if not d.is_dom0}
        self.marked &= set(self._domains)
        self._apply()

    def set_lists(self, auto_names: Collection[str], saved_names: Collection[str]) -> None:
        auto, saved = frozenset(auto_names), frozenset(saved_names)
        if (auto, saved) != (self.auto_names, self.saved_names):
            self.auto_names, self.saved_names = auto, saved
            self._apply()

    def toggle_mark(self, name: str) -> None:
        self.marked ^= {name}
        self._apply()

    def clear_marks(self) -> None:
        if self.marked:
            self.marked.clear()
            self._apply()

    def guest_at_cursor(self) -> str | None:
        return self.key_at_cursor()

    def domain(self, name: str) -> Domain | None:
        return self._domains.get(name)

    @property
    def names(self) -> list[str]:
        return list(self._domains)

    def _apply(self) -> None:
        cache, fresh = self._spec_cache, {}
        want: dict[str, tuple[Spec, ...]] = {}
        for n, d in self._domains.items():
            key = (d, n in self.auto_names, n in self.saved_names, n in self.marked)
            hit = cache.get(n)
            specs = hit[1] if hit is not None and hit[0] == key else row_specs(d, *key[1:])
            fresh[n] = (key, specs)
            want[n] = specs
        self._spec_cache = fresh
        if self.apply_rows(want):
            self.sort("id", key=lambda v: int(str(v)) if str(v).isdigit() else 1 << 30)
