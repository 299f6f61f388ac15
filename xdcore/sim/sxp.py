"""SXP as xend printed it: `sxp.show` atoms and `PrettyPrint.prettyprint` layout.

The simulated `xm list -l`, `xm create --dryrun` and xm save images must
look like xend's, and the old xendomains script greps that text line by
line, so the layout algorithm of xend/PrettyPrint.py (Xen 4.4) is ported
as is: width 80, each list a block whose breaks all turn into newlines
(indent 4 from the opening parenthesis) once the block does not fit in
what is left of the line.  Atoms print bare when made only of letters,
digits and `.-_:/~@`, otherwise as a Python 2 repr; floats as Python 2
`str()` (12 significant digits).
"""

from __future__ import annotations

import io
import re

_BARE = re.compile(r"^[a-zA-Z0-9._:/~@-]+$")


def atom(x) -> str:
    if isinstance(x, bool):
        return str(int(x))
    if isinstance(x, int):
        return str(x)
    if isinstance(x, float):
        text = "%.12g" % x
        return text if any(c in text for c in ".en") else text + ".0"
    s = str(x)
    if _BARE.match(s):
        return s
    return repr(s.encode("utf-8"))[1:]  # Python 2 str repr


def show(sxpr) -> str:
    """One-line form (sxp.show)."""
    if isinstance(sxpr, list):
        return "(" + " ".join(show(x) for x in sxpr) + ")"
    return atom(sxpr)


# -- xend/PrettyPrint.py ---------------------------------------------------------


class _Item:
    def __init__(self, width: int):
        self.width = width

    def insert(self, block: "_Block") -> None:
        block.addtoline(self)


class _String(_Item):
    def __init__(self, value: str):
        super().__init__(len(value))
        self.value = value

    def output(self, out) -> None:
        out.write(self.value)

    def prettyprint(self, line: "_Line") -> None:
        line.output(self)


class _Break(_Item):
    def __init__(self, width: int, indent: int):
        super().__init__(width)
        self.indent = indent
        self.space = 0

    def output(self, out) -> None:
        out.write(" " * self.width)

    def prettyprint(self, line: "_Line") -> None:
        if line.breaks(self.space):
            line.newline(self.indent)
        else:
            line.output(self)


class _LineItems(_Item):
    def __init__(self):
        super().__init__(0)
        self.content: list[_Item] = []

    def end(self) -> None:
        width = lastwidth = 0
        lastbreak = None
        for x in self.content:
            if isinstance(x, _Break):
                if lastbreak is not None:
                    lastbreak.space = width - lastwidth
                lastbreak, lastwidth = x, width
            width += x.width
        if lastbreak is not None:
            lastbreak.space = width - lastwidth
        self.width = width

    def prettyprint(self, line: "_Line") -> None:
        for x in self.content:
            x.prettyprint(line)


class _Block(_Item):
    def __init__(self, parent: "_Block | None"):
        super().__init__(0)
        self.lines = [_LineItems()]
        self.parent = parent
        self.indent = 0
        self.broken = False

    def add(self, item: _Item) -> None:
        item.insert(self)

    def addtoline(self, x: _Item) -> None:
        self.lines[-1].content.append(x)

    def end(self) -> None:
        self.width = 0
        for ln in self.lines:
            ln.end()
            self.width = max(self.width, ln.width)

    def breaks(self) -> bool:
        return self.broken

    def prettyprint(self, line: "_Line") -> None:
        self.indent = line.used
        line.block = self
        if not line.fits(self.width):
            self.broken = True
        for ln in self.lines:
            ln.prettyprint(line)
        line.block = self.parent


class _Line:
    def __init__(self, out, width: int):
        self.block: _Block | None = None
        self.out = out
        self.width = width
        self.used = 0
        self.space = width

    def newline(self, indent: int) -> None:
        assert self.block is not None
        indent += self.block.indent
        self.out.write("\n" + " " * indent)
        self.used = indent
        self.space = self.width - self.used

    def fits(self, n: int) -> bool:
        return self.space - n >= 0

    def breaks(self, n: int) -> bool:
        assert self.block is not None
        return self.block.breaks() or not self.fits(n)

    def output(self, x) -> None:
        self.space = max(self.space - x.width, 0)
        self.used += x.width
        x.output(self.out)


def _build(sxpr, parent: _Block | None) -> _Item:
    if not isinstance(sxpr, list):
        return _String(atom(sxpr))
    block = _Block(parent)
    block.add(_String("("))
    for i, x in enumerate(sxpr):
        if i:
            block.add(_Break(1, 4))
        block.add(_build(x, block))
    block.add(_Break(0, 0))
    block.add(_String(")"))
    block.end()
    return block


def prettyprint(sxpr, width: int = 80) -> str:
    """PrettyPrint.prettyprint(sxpr) output, including the trailing newline."""
    out = io.StringIO()
    if isinstance(sxpr, list):
        top = _build(sxpr, None)
        top.prettyprint(_Line(out, width))
    else:
        out.write(atom(sxpr))
    out.write("\n")
    return out.getvalue()
