"""The live domains, keyed by guest name (a nameless one by domid), updated by diff (only changed cells, one sort).

Sortable (click a header, or `ctrl+s` cycles the column; again on the same
column reverses) and filterable (`/` in the host view: a name or state
fragment).  The cursor stays on its guest when rows come, go or move.  Every
zombie is "(null)" in `xl list`: each is a row of its own, keyed by its domid
(`board.row_key`), so the keys here are those of the board's rows.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

from textual.binding import Binding

from xdcore.model import Domain

from ..board import row_key
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
    BINDINGS = [Binding("ctrl+s", "next_sort", "Sort by the next column", show=False)]
    SORTS = ("id", "name", "state", "mem", "cpu")

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self._domains: dict[str, Domain] = {}
        self.auto_names: frozenset[str] = frozenset()
        self.saved_names: frozenset[str] = frozenset()
        self.marked: set[str] = set()
        self._spec_cache: dict[str, tuple[tuple, tuple[Spec, ...]]] = {}
        self.sort_column = "id"
        self.sort_reverse = False
        self.filter_text = ""

    def on_mount(self) -> None:
        self.set_columns(COLUMNS)

    # -- data --------------------------------------------------------------------------

    def set_domains(self, domains: Iterable[Domain]) -> None:
        self._domains = {row_key(d.name, d.domid): d for d in domains if not d.is_dom0}
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

    def domain(self, key: str) -> Domain | None:
        """The domain of a row (a guest's name; a nameless domain's `row_key`)."""
        return self._domains.get(key)

    @property
    def names(self) -> list[str]:
        return list(self._domains)

    # -- sorting and filtering ----------------------------------------------------------

    def set_filter(self, text: str) -> None:
        self.filter_text = text.strip()
        self._apply(force_sort=True)

    def sort_by(self, column: str) -> None:
        self.sort_reverse = not self.sort_reverse if column == self.sort_column else column in ("mem", "cpu")
        self.sort_column = column
        self._apply(force_sort=True)

    def action_next_sort(self) -> None:
        i = self.SORTS.index(self.sort_column) if self.sort_column in self.SORTS else 0
        self.sort_by(self.SORTS[(i + 1) % len(self.SORTS)])

    def on_data_table_header_selected(self, event) -> None:
        event.stop()
        self.sort_by(str(event.column_key.value))

    def _shown_domain(self, d: Domain) -> bool:
        f = self.filter_text.lower()
        return not f or f in d.name.lower() or (d.state is not None and f in d.state.words)

    def _sort_key(self, key: str):
        d = self._domains.get(key)
        col = self.sort_column
        if d is None:
            return 0
        return {"name": d.name, "state": d.state.words if d.state else "", "mem": d.memory_mib,
                "cpu": d.cpu_time or 0.0}.get(col, d.domid)

    def _apply(self, force_sort: bool = False) -> None:
        at_cursor = self.guest_at_cursor()
        cache, fresh = self._spec_cache, {}
        want: dict[str, tuple[Spec, ...]] = {}
        for n, d in self._domains.items():
            if not self._shown_domain(d):
                continue
            key = (d, n in self.auto_names, n in self.saved_names, n in self.marked)
            hit = cache.get(n)
            specs = hit[1] if hit is not None and hit[0] == key else row_specs(d, *key[1:])
            fresh[n] = (key, specs)
            want[n] = specs
        self._spec_cache = fresh
        changed = self.apply_rows(want)
        if changed or force_sort or self.sort_column in ("state", "cpu", "mem"):
            with self.app.batch_update():
                self.sort("name", "id", key=lambda cells: self._sort_key(row_key(_plain(cells[0]), int(str(cells[1])))),
                          reverse=self.sort_reverse)
                if at_cursor is not None and at_cursor in want:
                    self.keep_cursor_on(at_cursor)


def _plain(cell) -> str:
    """The guest name in a Name cell ("✓ web01" when marked)."""
    return str(cell).lstrip("✓").strip()
