"""The `xm` adapter, for xend-era hosts (Oracle VM Server 3, Xen ≤ 4.4).

xm differs from xl in a few argv and in what it prints: `xm list -l` is
SXP and already carries each domain's state, so one process lists the
host; `xm create` takes the config file as its argument; `--halt` and
`--live` are genuine xm options and are kept; a config without `name`
defaults to the file's basename, which only the dry run knows.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..model import Domain
from .parse import domains_from_long, parse_xm_sxp
from .xl import SpawningToolstack

#: xm migrate options that take an argument (xm/migrate.py); `-s` is --ssl, a flag.
XM_MIGRATE_ARG_OPTIONS = frozenset({"-p", "--port", "-n", "--node"})


class XmToolstack(SpawningToolstack):
    """Spawns `xm` (resolved on PATH at each call; absent → ToolstackMissing)."""

    name = "xm"
    migrate_arg_options = XM_MIGRATE_ARG_OPTIONS

    async def list_domains(self) -> list[Domain]:
        """`xm list -l` (1 process): running domains with their state, ascending domid.

        Managed domains that are not running (no domid) are left out.
        """
        done = await self._run("list", "-l", timeout=self.query_timeout)
        return domains_from_long(parse_xm_sxp(done.stdout))

    def _dryrun_args(self, path: Path) -> tuple[str, ...]:
        return ("create", "--dryrun", "--quiet", str(path))

    async def create(self, config: Path, timeout: float | None = None) -> None:
        await self._run("create", "--quiet", str(config), timeout=timeout)

    # xm understands --halt, --reboot and --live: nothing to translate.
    def translate_shutdown_options(
        self, options: Sequence[str], key: str = "XENDOMAINS_SHUTDOWN"
    ) -> tuple[list[str], list[str]]:
        return list(options), []

    def translate_migrate_options(
        self, words: Sequence[str], key: str = "XENDOMAINS_MIGRATE"
    ) -> tuple[list[str], list[str]]:
        return list(words), []


__all__ = ["XmToolstack", "XM_MIGRATE_ARG_OPTIONS"]
