"""The one narrow port between the service and a Xen toolstack.

Adapters: `xl.XlToolstack` and `xm.XmToolstack` spawn the real commands;
`xdcore.sim.inprocess.SimToolstack` acts on a simulated host in-process.
Every method is a coroutine so that the CLI (`asyncio.run`) and the console
(its own loop) await the very same code.

Errors: every method raises only `xdcore.errors.ToolstackError` subclasses —
`CommandFailed` (argv, exit code, stderr), `CommandTimedOut` when `timeout`
ran out (the whole process tree is killed first), `CommandCancelled` when the
awaiting task was cancelled (process tree killed, then CancelledError is
re-raised by the caller's task machinery), `ParseError`, `ToolstackMissing`.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from pathlib import Path

from ..model import AutoConfig, Domain, HostInfo

CommandObserver = Callable[[str, tuple[str, ...], "int | None", float, str], None]
"""observer(phase, argv, pid_or_rc, elapsed_or_timeout, stderr): phase is 'start' or 'end'."""


class Toolstack(abc.ABC):
    """What the service needs from xl / xm."""

    #: "xl" or "xm" — also selects the save-image header to look for.
    name: str = "xl"

    def __init__(self) -> None:
        self.observers: list[CommandObserver] = []
        #: listeners for warnings the adapter copes with on its own (e.g. a corrupt `xl list -l`)
        self.notice_listeners: list[Callable[[str], None]] = []

    def notice(self, text: str) -> None:
        for listener in list(self.notice_listeners):
            listener(text)

    def peer_argv(self, ssh: Sequence[str], host: str, *command: str) -> list[str]:
        """The command that runs `command` on another host (a migration target): `SSH HOST COMMAND…`.
        The in-process simulator runs its pool's ssh instead of the `ssh` on PATH."""
        return [*ssh, host, *command]

    # -- queries ---------------------------------------------------------------

    @abc.abstractmethod
    async def list_domains(self) -> list[Domain]:
        """All domains, Domain-0 included, ascending domid, with state flags.

        A constant number of processes per call (xl: `xl list -l` + `xl list`),
        never one per guest.  Raises ParseError on output it cannot read.
        """

    @abc.abstractmethod
    async def config_names(self, paths: Sequence[Path]) -> list[AutoConfig]:
        """The guest name of each domain config file, same order as `paths`.

        Read natively (`name = "…"`); only a file that is not plain falls back
        to `create --quiet --dryrun --defconfig FILE`.  Failures are reported
        in `AutoConfig.error`, never raised.
        """

    @abc.abstractmethod
    async def host_info(self) -> HostInfo:
        """`xl info` / `xm info`."""

    async def xenstore_domid(self) -> int | None:
        """Domid of a xenstore stub domain (/tool/xenstored/domid), None when xenstored runs in dom0."""
        return None

    # -- actions ---------------------------------------------------------------

    @abc.abstractmethod
    async def create(self, config: Path, timeout: float | None = None) -> None:
        """`create --quiet --defconfig FILE`."""

    @abc.abstractmethod
    async def restore(self, image: Path, timeout: float | None = None) -> None:
        """`restore FILE`."""

    @abc.abstractmethod
    async def save(self, domid: int, path: Path, timeout: float | None = None) -> None:
        """`save ID PATH` (the guest is destroyed on success)."""

    @abc.abstractmethod
    async def migrate(self, domid: int, target: Sequence[str], timeout: float | None = None) -> None:
        """`migrate [OPTIONS] ID HOST`; `target` is the split XENDOMAINS_MIGRATE (options and host)."""

    @abc.abstractmethod
    async def shutdown(self, domid: int, options: Sequence[str], timeout: float | None = None) -> None:
        """`shutdown OPTIONS ID`."""

    @abc.abstractmethod
    async def shutdown_all(self, options: Sequence[str], timeout: float | None = None) -> None:
        """`shutdown OPTIONS` where options contain --all / -a."""

    @abc.abstractmethod
    async def sysrq(self, domid: int, key: str, timeout: float | None = None) -> None:
        """`sysrq ID KEY`."""

    @abc.abstractmethod
    async def destroy(self, domid: int, timeout: float | None = None) -> None:
        """`destroy ID`."""

    def translate_shutdown_options(self, options: Sequence[str], key: str = "XENDOMAINS_SHUTDOWN") -> tuple[list[str], list[str]]:
        """Options fit for this toolstack, and notes (naming `key`) on what was translated."""
        return list(options), []

    def translate_migrate_options(self, words: Sequence[str], key: str = "XENDOMAINS_MIGRATE") -> tuple[list[str], list[str]]:
        return list(words), []
