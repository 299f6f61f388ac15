"""The `xl` adapter: the Toolstack port spoken through the real xl command.

Every command goes through `process.run` (watchdog, process-tree kill,
observers), with an argv built here word by word — config values such as
XENDOMAINS_MIGRATE are split into words once and never pass through a shell.
Options written for xm (`--halt`, `--live`) are translated for xl as
SEMANTICS §1 says; the translation functions are module-level and pure so
that the simulator and the pipeline can reuse them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

from ..errors import CommandFailed, ParseError, ToolstackError
from ..model import AutoConfig, Domain, HostInfo
from . import process
from .parse import (
    merge_listing,
    names_break_lines,
    parse_dryrun_name,
    parse_xl_info,
    parse_xl_list,
    parse_xl_list_long,
    parse_xl_list_named,
    read_config_name,
)
from .port import Toolstack

#: Watchdog for queries (list, info, dry-run): a wedged xenstored must not hang a boot.
QUERY_TIMEOUT = 60.0
#: At most this many `create --dryrun` at once in config_names().
DRYRUN_CONCURRENCY = 8

# -- option translation (pure) ---------------------------------------------------

_XL_SHUTDOWN_DROP = {
    "H": "xl has no such option; it powers off by default",
    "R": "xl shutdown cannot reboot; use xl reboot",
}
_XL_SHUTDOWN_LONG = {"--halt": "H", "--reboot": "R"}


def translate_shutdown_for_xl(options: Sequence[str], key: str = "XENDOMAINS_SHUTDOWN") -> tuple[list[str], list[str]]:
    """Drop xm's `--halt`/`-H` and `--reboot`/`-R` (also inside `-aH`); keep the rest.

    Returns (options, notes); notes are one human line per dropped option.
    """
    out: list[str] = []
    notes: list[str] = []

    def note(word: str, letter: str) -> None:
        msg = f"{key}: dropped {word} ({_XL_SHUTDOWN_DROP[letter]})"
        if msg not in notes:
            notes.append(msg)

    for word in options:
        if word in _XL_SHUTDOWN_LONG:
            note(word, _XL_SHUTDOWN_LONG[word])
        elif word.startswith("-") and not word.startswith("--") and len(word) > 1:
            kept = ""
            for letter in word[1:]:
                if letter in _XL_SHUTDOWN_DROP:
                    note(f"-{letter}", letter)
                else:
                    kept += letter
            if kept:
                out.append("-" + kept)
        else:
            out.append(word)
    return out, notes


#: xl migrate options that take an argument (xl_migrate.c: "FC:s:epD").
XL_MIGRATE_ARG_OPTIONS = frozenset({"-s", "-C"})


def translate_migrate_for_xl(words: Sequence[str], key: str = "XENDOMAINS_MIGRATE") -> tuple[list[str], list[str]]:
    """Drop `--live`/`-l` (xl always migrates live and refuses `-l`)."""
    out: list[str] = []
    notes: list[str] = []
    skip_next = False
    for word in words:
        if skip_next:  # the argument of -s / -C is never an option
            out.append(word)
            skip_next = False
            continue
        if word in ("--live", "-l"):
            msg = f"{key}: dropped {word} (xl always migrates live)"
            if msg not in notes:
                notes.append(msg)
            continue
        out.append(word)
        skip_next = word in XL_MIGRATE_ARG_OPTIONS
    return out, notes


def split_migrate_target(words: Sequence[str], arg_options: frozenset[str]) -> tuple[list[str], str]:
    """(options, host) from the split XENDOMAINS_MIGRATE: the host is the last non-option word.

    Options listed in `arg_options` consume the next word as their argument.
    Raises ToolstackError when no host is named.
    """
    options, host = split_migrate_words(words, arg_options)
    if host is None:
        raise ToolstackError("XENDOMAINS_MIGRATE names no target host: " + " ".join(words))
    return options, host


def split_migrate_words(words: Sequence[str], arg_options: frozenset[str]) -> tuple[list[str], str | None]:
    """(options, host or None): XENDOMAINS_MIGRATE may hold only options when XENDOMAINS_MIGRATE_TARGETS names the hosts."""
    options: list[str] = []
    positional: list[tuple[int, str]] = []
    i = 0
    words = list(words)
    while i < len(words):
        w = words[i]
        if w.startswith("-") and w != "-":
            options.append(w)
            if w in arg_options and i + 1 < len(words):
                options.append(words[i + 1])
                i += 1
        else:
            positional.append((len(options), w))
            options.append(w)
        i += 1
    if not positional:
        return options, None
    index, host = positional[-1]
    del options[index]
    return options, host


# -- xenstore stub domain ---------------------------------------------------------


async def read_xenstore_domid(observers: Sequence[process.CommandObserver] = ()) -> int | None:
    """`xenstore-read /tool/xenstored/domid` when that tool is on PATH; None otherwise or on failure."""
    if process.which("xenstore-read") is None:
        return None
    try:
        done = await process.run(
            ["xenstore-read", "/tool/xenstored/domid"], timeout=5, check=False, observers=observers
        )
    except ToolstackError:
        return None
    if done.returncode != 0:
        return None
    value = done.stdout.strip()
    return int(value) if value.isdigit() else None


# -- the adapter -------------------------------------------------------------------


class SpawningToolstack(Toolstack):
    """What xl and xm share: resolving the command, running it, the common verbs.

    Subclasses set `name`, `migrate_arg_options` and the few argv that differ.
    """

    migrate_arg_options: frozenset[str] = frozenset()

    def __init__(self, command: str | None = None, query_timeout: float = QUERY_TIMEOUT):
        super().__init__()
        self.command = command or self.name
        self.query_timeout = query_timeout

    def _argv(self, *args: str) -> list[str]:
        # a missing command surfaces as ToolstackMissing from process.run (no PATH scan per call)
        return [self.command, *args]

    async def _run(self, *args: str, timeout: float | None) -> process.Completed:
        return await process.run(self._argv(*args), timeout=timeout, observers=self.observers)

    def _dryrun_args(self, path: Path) -> tuple[str, ...]:
        raise NotImplementedError

    async def config_names(self, paths: Sequence[Path]) -> list[AutoConfig]:
        sem = asyncio.Semaphore(DRYRUN_CONCURRENCY)

        async def one(path: Path) -> AutoConfig:
            path = Path(path)
            try:
                text = path.read_bytes().decode("utf-8", errors="replace")
            except OSError as exc:
                return AutoConfig(path, None, f"cannot read {path}: {exc.strerror or exc}")
            name = read_config_name(text)
            if name is not None:
                return AutoConfig(path, name)
            async with sem:
                return await self._dryrun_name(path)

        return list(await asyncio.gather(*(one(p) for p in paths)))

    async def _dryrun_name(self, path: Path) -> AutoConfig:
        try:
            done = await self._run(*self._dryrun_args(path), timeout=self.query_timeout)
            return AutoConfig(path, parse_dryrun_name(done.stdout))
        except CommandFailed as exc:
            stderr = exc.stderr.strip()
            return AutoConfig(path, None, f"{exc.title}: {stderr}" if stderr else exc.title)
        except ToolstackError as exc:  # ParseError, ToolstackMissing
            return AutoConfig(path, None, str(exc))

    async def host_info(self) -> HostInfo:
        done = await self._run("info", timeout=self.query_timeout)
        return parse_xl_info(done.stdout)

    async def xenstore_domid(self) -> int | None:
        return await read_xenstore_domid(self.observers)

    async def restore(self, image: Path, timeout: float | None = None) -> None:
        await self._run("restore", str(image), timeout=timeout)

    async def save(self, domid: int, path: Path, timeout: float | None = None) -> None:
        await self._run("save", str(domid), str(path), timeout=timeout)

    async def migrate(self, domid: int, target: Sequence[str], timeout: float | None = None) -> None:
        """`migrate [OPTIONS] ID HOST`; `target` is translated here too (idempotent)."""
        words, _ = self.translate_migrate_options(target)
        options, host = split_migrate_target(words, self.migrate_arg_options)
        await self._run("migrate", *options, str(domid), host, timeout=timeout)

    async def shutdown(self, domid: int, options: Sequence[str], timeout: float | None = None) -> None:
        """`shutdown OPTIONS ID`; options are translated here too (idempotent)."""
        opts, _ = self.translate_shutdown_options(options)
        await self._run("shutdown", *opts, str(domid), timeout=timeout)

    async def shutdown_all(self, options: Sequence[str], timeout: float | None = None) -> None:
        """`shutdown OPTIONS`, adding `--all` when the options lack it."""
        opts, _ = self.translate_shutdown_options(options, key="XENDOMAINS_SHUTDOWN_ALL")
        if not any(o in ("-a", "--all") or (o.startswith("-") and not o.startswith("--") and "a" in o) for o in opts):
            opts = ["--all", *opts]
        await self._run("shutdown", *opts, timeout=timeout)

    async def sysrq(self, domid: int, key: str, timeout: float | None = None) -> None:
        await self._run("sysrq", str(domid), key, timeout=timeout)

    async def destroy(self, domid: int, timeout: float | None = None) -> None:
        await self._run("destroy", str(domid), timeout=timeout)

    def translate_shutdown_options(
        self, options: Sequence[str], key: str = "XENDOMAINS_SHUTDOWN"
    ) -> tuple[list[str], list[str]]:
        return list(options), []

    def translate_migrate_options(
        self, words: Sequence[str], key: str = "XENDOMAINS_MIGRATE"
    ) -> tuple[list[str], list[str]]:
        return list(words), []


class XlToolstack(SpawningToolstack):
    """Spawns `xl` (resolved on PATH at each call; absent → ToolstackMissing)."""

    name = "xl"
    migrate_arg_options = XL_MIGRATE_ARG_OPTIONS

    async def list_domains(self) -> list[Domain]:
        """`xl list -l` and `xl list` at once (2 processes), joined on domid."""
        long_argv, plain_argv = self._argv("list", "-l"), self._argv("list")
        results = await asyncio.gather(
            process.run(long_argv, timeout=self.query_timeout, observers=self.observers),
            process.run(plain_argv, timeout=self.query_timeout, observers=self.observers),
            return_exceptions=True,
        )
        for r in results:  # both have finished: no orphan process left behind
            if isinstance(r, BaseException):
                raise r
        long_done, plain_done = results
        assert isinstance(long_done, process.Completed) and isinstance(plain_done, process.Completed)
        try:
            entries = parse_xl_list_long(long_done.stdout)
        except ParseError as exc:
            # `xl list` alone has what an evacuation needs (domid, name, state): never give up on it
            self.notice(f"{exc}; using the plain `xl list` instead (no uuid or stored config)")
            entries = []
        if names_break_lines(e.name for e in entries):
            # a name holding a newline spans lines of the plain listing: read it knowing the names by domid
            rows = parse_xl_list_named(plain_done.stdout, {e.domid: e.name for e in entries
                                                           if e.domid is not None and e.name})
        else:
            rows = parse_xl_list(plain_done.stdout)
        return merge_listing(entries, rows)

    def _dryrun_args(self, path: Path) -> tuple[str, ...]:
        return ("create", "--quiet", "--dryrun", "--defconfig", str(path))

    async def create(self, config: Path, timeout: float | None = None) -> None:
        await self._run("create", "--quiet", "--defconfig", str(config), timeout=timeout)

    def translate_shutdown_options(
        self, options: Sequence[str], key: str = "XENDOMAINS_SHUTDOWN"
    ) -> tuple[list[str], list[str]]:
        return translate_shutdown_for_xl(options, key)

    def translate_migrate_options(
        self, words: Sequence[str], key: str = "XENDOMAINS_MIGRATE"
    ) -> tuple[list[str], list[str]]:
        return translate_migrate_for_xl(words, key)


__all__ = [
    "SpawningToolstack",
    "XlToolstack",
    "read_xenstore_domid",
    "split_migrate_target",
    "split_migrate_words",
    "translate_migrate_for_xl",
    "translate_shutdown_for_xl",
]
