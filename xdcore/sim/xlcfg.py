"""The xl domain config language (xl.cfg(5) "SYNTAX"), parsed as libxlutil parses it.

Why a port and not a regex: the simulated `xl create` must accept and
reject exactly the files the real one does, with the same messages, because
the service under test reports those messages verbatim.  The scanner
follows tools/libs/util/libxlu_cfg_l.l rule by rule (including its
"lexical error" state and the likely-Python heuristic) and the parser is the
real bison 3.3.2 LALR(1) automaton of libxlu_cfg_y.y: its tables are copied
from the generated libxlu_cfg_y.c (Xen 4.17), so the "syntax error,
unexpected X, expecting Y" texts and the error recovery (`stmt: error
NEWLINE`) are the real ones.

Result: `parse(text, source)` returns a `Config` (the settings in file order,
later ones win) or raises `ConfigSyntaxError` carrying the stderr lines that
real xl prints before `Failed to parse config: Invalid argument`.
"""

from __future__ import annotations

# -- values --------------------------------------------------------------------
# (plain classes with __slots__, not dataclasses: every simulated `xl create` parses a config, and
# importing dataclasses would cost it ~7 ms)


class Value:
    """A setting's value: a string atom (numbers are strings too) or a list of values."""

    __slots__ = ("line", "atom", "items")

    def __init__(self, line: int, atom: str | None = None, items: list[Value] | None = None):
        self.line = line
        self.atom = atom
        self.items = items

    def __eq__(self, other):
        if other.__class__ is not self.__class__:
            return NotImplemented
        return (self.line, self.atom, self.items) == (other.line, other.atom, other.items)

    __hash__ = None

    def __repr__(self) -> str:
        return f"Value(line={self.line!r}, atom={self.atom!r}, items={self.items!r})"

    @property
    def is_list(self) -> bool:
        return self.items is not None


class Setting:
    __slots__ = ("name", "value", "line")

    def __init__(self, name: str, value: Value, line: int):
        self.name = name
        self.value = value
        self.line = line

    def __eq__(self, other):
        if other.__class__ is not self.__class__:
            return NotImplemented
        return (self.name, self.value, self.line) == (other.name, other.value, other.line)

    __hash__ = None

    def __repr__(self) -> str:
        return f"Setting(name={self.name!r}, value={self.value!r}, line={self.line!r})"


class Config:
    """Parsed settings; `get*` follow libxlutil (last setting wins, warnings to `warnings`)."""

    __slots__ = ("source", "settings", "warnings")

    def __init__(self, source: str, settings: dict[str, Setting] | None = None, warnings: list[str] | None = None):
        self.source = source
        self.settings = {} if settings is None else settings
        self.warnings = [] if warnings is None else warnings

    def __eq__(self, other):
        if other.__class__ is not self.__class__:
            return NotImplemented
        return (self.source, self.settings, self.warnings) == (other.source, other.settings, other.warnings)

    __hash__ = None

    def __repr__(self) -> str:
        return f"Config(source={self.source!r}, settings={self.settings!r}, warnings={self.warnings!r})"

    def _find(self, name: str) -> Setting | None:
        return self.settings.get(name)

    def has(self, name: str) -> bool:
        return name in self.settings

    def get_string(self, name: str) -> str | None:
        s = self._find(name)
        if s is None:
            return None
        if s.value.is_list:
            self.warnings.append(
                f"{self.source}:{s.line}: warning: parameter `{name}' is a list but should be a single value"
            )
            return None
        return s.value.atom

    def get_long(self, name: str) -> int | None:
        text = self.get_string(name)
        if text is None:
            return None
        value = _strtol(text)
        if value is None:
            s = self.settings[name]
            self.warnings.append(f"{self.source}:{s.line}: warning: parameter `{name}' is not a valid number")
        return value

    def get_list(self, name: str) -> list[str] | None:
        """A list of strings; a single string counts as a one-element list (xlu_cfg_get_list_as_string_list)."""
        s = self._find(name)
        if s is None:
            return None
        if not s.value.is_list:
            return [s.value.atom or ""]
        out: list[str] = []
        for v in s.value.items or []:
            if v.is_list:
                self.warnings.append(
                    f"{self.source}:{s.line}: warning: parameter `{name}' is a list but should be a single value"
                )
                continue
            out.append(v.atom or "")
        return out


def _strtol(text: str) -> int | None:
    t = text.strip()
    neg = t.startswith("-")
    if t[:1] in "+-":
        t = t[1:]
    try:
        if t.lower().startswith("0x"):
            n = int(t[2:], 16)
        elif len(t) > 1 and t.startswith("0"):
            n = int(t, 8)
        else:
            n = int(t, 10)
    except ValueError:
        return None
    return -n if neg else n


class ConfigSyntaxError(Exception):
    """The file does not parse; `lines` are what xl printed (without the final 'Failed to parse')."""

    def __init__(self, lines: list[str]):
        self.lines = lines
        super().__init__("\n".join(lines))


# -- scanner (libxlu_cfg_l.l) -----------------------------------------------------

# token numbers as bison's yytranslate maps them (internal symbol numbers)
T_EOF, T_ERROR, T_UNDEF, T_IDENT, T_STRING, T_NUMBER, T_NEWLINE, T_OPADD = 0, 1, 2, 3, 4, 5, 6, 7
T_EQ, T_SEMI, T_LBRACK, T_RBRACK, T_COMMA = 8, 9, 10, 11, 12
_CHAR_TOKENS = {"=": T_EQ, ";": T_SEMI, "[": T_LBRACK, "]": T_RBRACK, ",": T_COMMA}

_PYTHONISH = set("+,-.():")  # flex range [+-.] is + , - . ; ',' is taken by an earlier rule

# The scanner's patterns, matched by hand rather than with `re`: importing re (and the enum
# module it needs) would cost every simulated `xl create` ~6 ms.  Each function returns where
# the match starting at `pos` ends, or -1; tests/sim/test_xlcfg_scanner.py checks them against
# the flex patterns written as regular expressions.
_LOWER = frozenset("abcdefghijklmnopqrstuvwxyz")
_DIGITS = frozenset("0123456789")
_IDENT_REST = _LOWER | _DIGITS | frozenset("._")
_NUMBER_REST = _DIGITS | frozenset("abcdefx")
_HEX = _DIGITS | frozenset("abcdefABCDEF")


def _match_ident(text: str, pos: int) -> int:
    """[a-z][._0-9a-z]*"""
    n = len(text)
    if pos >= n or text[pos] not in _LOWER:
        return -1
    pos += 1
    while pos < n and text[pos] in _IDENT_REST:
        pos += 1
    return pos


def _match_number(text: str, pos: int) -> int:
    """[0-9][0-9a-fx]*"""
    n = len(text)
    if pos >= n or text[pos] not in _DIGITS:
        return -1
    pos += 1
    while pos < n and text[pos] in _NUMBER_REST:
        pos += 1
    return pos


def _match_quoted(text: str, pos: int) -> int:
    r"""Q(?:[^\\Q\n]|\\[^\n])*Q for the quote Q at pos: a string on one line, backslash escapes."""
    n = len(text)
    quote = text[pos]
    pos += 1
    while pos < n:
        c = text[pos]
        if c == quote:
            return pos + 1
        if c == "\n":
            return -1
        if c == "\\":
            if pos + 1 >= n or text[pos + 1] == "\n":
                return -1
            pos += 2
        else:
            pos += 1
    return -1


def _match_comment(text: str, pos: int) -> int:
    r"""#[^\n]*"""
    end = text.find("\n", pos)
    return len(text) if end < 0 else end


def _match_lexerr_run(text: str, pos: int) -> int:
    r"""[^ \t\n]*\n?"""
    n = len(text)
    while pos < n and text[pos] not in " \t\n":
        pos += 1
    if pos < n and text[pos] == "\n":
        pos += 1
    return pos


class _Tok:
    __slots__ = ("kind", "text", "line", "value")

    def __init__(self, kind: int, text: str, line: int, value: str | None = None):
        self.kind = kind
        self.text = text
        self.line = line
        self.value = value


class _Ctx:
    def __init__(self, source: str):
        self.source = source
        self.errors: list[str] = []
        self.lexerrlineno = -1
        self.likely_python = False
        self.err = False

    def ytr_error(self, lineno: int, text: str, msg: str) -> None:
        if lineno <= self.lexerrlineno:
            return
        newline = ""
        if text.endswith("\n"):
            text = text[:-1]
            lineno -= 1
            if not text:
                newline = "<newline>"
        text = text.rstrip(" \t")
        quoted = f"`{text}'" if text else ""
        self.errors.append(f"{self.source}:{lineno}: config parsing error near {quoted}{newline}: {msg}")
        self.err = True

    def lexical_error(self, lineno: int, text: str, msg: str) -> None:
        self.ytr_error(lineno, text, msg)
        self.lexerrlineno = lineno


def _dequote(ctx: _Ctx, text: str, lineno: int) -> str:
    out: list[str] = []
    body = text[1:-1]
    i = 0
    simple = {'"': '"', "'": "'", "\\": "\\", "a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}
    while i < len(body):
        c = body[i]
        i += 1
        if c != "\\":
            out.append(c)
            continue
        nc = body[i]
        i += 1
        if nc in simple:
            out.append(simple[nc])
        elif nc == "x":
            hexdigits = body[i : i + 2]  # [0-9a-fA-F]{2}
            if len(hexdigits) < 2 or hexdigits[0] not in _HEX or hexdigits[1] not in _HEX:
                ctx.lexical_error(lineno, text, "invalid digit after backslash hexnumerical character escape in quoted string")
                break
            out.append(chr(int(hexdigits, 16)))
            i += 2
        elif "0" <= nc <= "7":
            more = body[i : i + 2]  # [0-9]{0,2}
            if more[:1] not in _DIGITS:
                more = ""
            elif more[1:] not in _DIGITS:
                more = more[:1]
            digits = nc + more
            out.append(chr(int(digits, 10) & 0xFF))
            i += len(digits) - 1
        else:
            ctx.lexical_error(lineno, text, "invalid character after backslash in quoted string")
            break
    return "".join(out)


def _scan(text: str, ctx: _Ctx):
    pos = 0
    lineno = 1
    n = len(text)
    while True:
        if pos >= n:
            yield _Tok(T_EOF, "", lineno)
            return
        c = text[pos]
        if c in " \t":
            pos += 1
            continue
        if c == "#":
            pos = _match_comment(text, pos)
            continue
        if c == "\n":
            pos += 1
            lineno += 1
            yield _Tok(T_NEWLINE, "\n", lineno - 1)
            continue
        # longest match among the INITIAL rules, earlier rule on a tie
        best: tuple[int, int] | None = None  # (length, kind)
        end = _match_ident(text, pos)
        if end >= 0:
            best = (end - pos, T_IDENT)
        end = _match_number(text, pos)
        if end >= 0 and (best is None or end - pos > best[0]):
            best = (end - pos, T_NUMBER)
        if text.startswith("+=", pos) and (best is None or best[0] < 2):
            best = (2, T_OPADD)
        if c in _CHAR_TOKENS and best is None:
            best = (1, _CHAR_TOKENS[c])
        if c in "\"'":
            end = _match_quoted(text, pos)
            if end >= 0 and (best is None or end - pos > best[0]):
                best = (end - pos, T_STRING)
        if best is not None:
            length, kind = best
            tok_text = text[pos : pos + length]
            pos += length
            value = _dequote(ctx, tok_text, lineno) if kind == T_STRING else tok_text
            yield _Tok(kind, tok_text, lineno, value)
            continue
        # rules 13/14: a character no rule takes starts a lexical error (yymore)
        if c in _PYTHONISH:
            ctx.likely_python = True
        start = pos
        pos += 1
        pos = _match_lexerr_run(text, pos)
        err_text = text[start:pos]
        if err_text.endswith("\n"):
            lineno += 1
            ctx.lexical_error(lineno, err_text, "lexical error")
            yield _Tok(T_NEWLINE, err_text, lineno)
        else:
            ctx.lexical_error(lineno, err_text, "lexical error")


# -- parser (bison 3.3.2 tables of libxlu_cfg_y.c, Xen 4.17) ------------------------

YYFINAL, YYLAST, YYNTOKENS, YYPACT_NINF = 3, 27, 13, -18
YYPACT = [-18, 5, 1, -18, -3, 14, -18, -18, -18, 3, -18, -18, 10, 10, -18, -18, -18, -18, -18, -18,
          -18, 13, -18, -18, 15, 12, 19, -18, -18, 13, -18, 19]
YYDEFACT = [4, 0, 0, 1, 0, 0, 11, 12, 5, 3, 7, 8, 0, 0, 6, 15, 16, 22, 10, 13, 9, 17, 23, 22, 0, 18,
            20, 14, 22, 19, 22, 21]
YYPGOTO = [-18, -18, -18, -18, -18, 18, -13, -18, -18, -18, -17]
YYDEFGOTO = [-1, 1, 2, 8, 9, 10, 18, 19, 24, 25, 21]
YYTABLE = [20, -2, 4, 11, 5, 3, 26, 6, 23, 6, 7, 29, 7, 31, 15, 16, 30, 15, 16, 22, 17, 12, 13, 17,
           28, 22, 27, 14]
YYCHECK = [13, 0, 1, 6, 3, 0, 23, 6, 21, 6, 9, 28, 9, 30, 4, 5, 29, 4, 5, 6, 10, 7, 8, 10, 12, 6,
           11, 9]
YYR1 = [0, 13, 14, 14, 15, 15, 16, 16, 16, 17, 17, 18, 18, 19, 19, 20, 20, 21, 21, 21, 22, 22, 23, 23]
YYR2 = [0, 2, 1, 2, 0, 2, 2, 1, 2, 3, 3, 1, 1, 1, 4, 1, 1, 0, 1, 3, 2, 5, 0, 2]
YYTNAME = ["$end", "error", "$undefined", "IDENT", "STRING", "NUMBER", "NEWLINE", "+=", "'='", "';'",
           "'['", "']'", "','"]


def _syntax_error_message(state: int, token: int) -> str:
    args = [YYTNAME[token]]
    yyn = YYPACT[state]
    if yyn != YYPACT_NINF:
        xbegin = -yyn if yyn < 0 else 0
        xend = min(YYLAST - yyn + 1, YYNTOKENS)
        for x in range(xbegin, xend):
            if YYCHECK[x + yyn] == x and x != T_ERROR:
                if len(args) == 5:
                    args = args[:1]
                    break
                args.append(YYTNAME[x])
    if len(args) == 1:
        return f"syntax error, unexpected {args[0]}"
    return f"syntax error, unexpected {args[0]}, expecting " + " or ".join(args[1:])


def _reduce(rule: int, vals: list, lines: list[int], cfg: Config, ctx: _Ctx):
    """Semantic actions of libxlu_cfg_y.y; returns ($$, first_line of the LHS)."""
    n = YYR2[rule]
    rhs = vals[len(vals) - n :] if n else []
    first = lines[len(lines) - n] if n else lines[-1]
    if rule in (9, 10):  # assignment: IDENT '=' value | IDENT "+=" value
        name, value = rhs[0], rhs[2]
        _store(cfg, ctx, name, value, rule == 10, lines[-1])
        return None, first
    if rule == 13:  # value: atom
        return Value(line=first, atom=rhs[0]), first
    if rule == 14:  # value: '[' nlok valuelist ']'
        return Value(line=first, items=rhs[2]), first
    if rule in (15, 16):
        return rhs[0], first
    if rule == 17:
        return [], first
    if rule in (18, 19):
        return rhs[0], first
    if rule == 20:  # values: value nlok
        return [rhs[0]], first
    if rule == 21:  # values: values ',' nlok value nlok
        rhs[0].append(rhs[3])
        return rhs[0], first
    return None, first


def _store(cfg: Config, ctx: _Ctx, name: str, value: Value, add: bool, line: int) -> None:
    if ctx.err:
        return
    old = cfg.settings.get(name)
    if add and old is not None:
        if old.value.is_list and value.is_list:
            value = Value(line=value.line, items=list(old.value.items or []) + list(value.items or []))
        elif not old.value.is_list and not value.is_list:
            value = Value(line=value.line, atom=(old.value.atom or "") + (value.atom or ""))
        else:
            ctx.errors.append(
                f"{cfg.source}:{line}: warning: can't add to parameter `{name}': incompatible types"
            )
            ctx.err = True
            return
    cfg.settings.pop(name, None)
    cfg.settings[name] = Setting(name=name, value=value, line=value.line)


def parse(text: str, source: str) -> Config:
    """Parse xl config text; raise ConfigSyntaxError with xl's messages on any error."""
    ctx = _Ctx(source)
    cfg = Config(source=source)
    tokens = _scan(text, ctx)
    states = [0]
    vals: list = [None]
    lines: list[int] = [1]
    errstatus = 0
    la: _Tok | None = None
    state = 0
    while True:
        if state == YYFINAL:
            break
        yyn = YYPACT[state]
        action: tuple[str, int]
        if yyn == YYPACT_NINF:
            action = ("default", 0)
        else:
            if la is None:
                la = next(tokens)
            idx = yyn + la.kind
            if idx < 0 or idx > YYLAST or YYCHECK[idx] != la.kind:
                action = ("default", 0)
            else:
                t = YYTABLE[idx]
                action = ("reduce", -t) if t <= 0 else ("shift", t)
        if action[0] == "default":
            rule = YYDEFACT[state]
            action = ("reduce", rule) if rule else ("error", 0)
        if action[0] == "shift":
            if errstatus:
                errstatus -= 1
            assert la is not None
            state = action[1]
            states.append(state)
            vals.append(la.value)
            lines.append(la.line)
            la = None
            continue
        if action[0] == "reduce":
            rule = action[1]
            val, first = _reduce(rule, vals, lines, cfg, ctx)
            n = YYR2[rule]
            if n:
                del states[-n:], vals[-n:], lines[-n:]
            lhs = YYR1[rule] - YYNTOKENS
            i = YYPGOTO[lhs] + states[-1]
            state = YYTABLE[i] if 0 <= i <= YYLAST and YYCHECK[i] == states[-1] else YYDEFGOTO[lhs]
            states.append(state)
            vals.append(val)
            lines.append(first)
            continue
        # syntax error
        if not errstatus:
            if la is None:
                ctx.ytr_error(lines[-1], "", "syntax error")
            else:
                ctx.ytr_error(la.line, la.text, _syntax_error_message(state, la.kind))
        if errstatus == 3 and la is not None:
            if la.kind == T_EOF:
                break  # YYABORT
            la = None
        errstatus = 3
        while True:
            yyn = YYPACT[state]
            if yyn != YYPACT_NINF:
                idx = yyn + T_ERROR
                if 0 <= idx <= YYLAST and YYCHECK[idx] == T_ERROR and YYTABLE[idx] > 0:
                    break
            if len(states) == 1:
                state = -1
                break
            states.pop(), vals.pop(), lines.pop()
            state = states[-1]
        if state == -1:
            break  # YYABORT
        state = YYTABLE[YYPACT[state] + T_ERROR]
        states.append(state)
        vals.append(None)
        lines.append(la.line if la else lines[-1])
    if ctx.err or ctx.errors:
        out = list(ctx.errors)
        if ctx.likely_python:
            out += [
                "warning: Config file looks like it contains Python code.",
                "warning:  Arbitrary Python is no longer supported.",
                "warning:  See https://wiki.xen.org/wiki/PythonInXlConfig",
            ]
        raise ConfigSyntaxError(out)
    return cfg
