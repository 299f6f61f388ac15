"""`SimToolstack`: the Toolstack port acting on a simulated host without spawning anything.

Why: the console's demo mode and fast unit tests want the simulator's
behaviour (latencies, faults, messages) without hundreds of processes.
It runs the very command generators the `xl` shim runs (xlcmd), with
asyncio.sleep for their waits, and turns a non-zero exit into the same
`CommandFailed` the spawning adapter raises: the same argv (e.g.
``("xl", "save", "3", "/path")``), exit code and stderr text.  A `timeout`
raises `CommandTimedOut`; cancelling the awaiting task cancels the command
and re-raises CancelledError, as `process.run` does.  Either way the command
ends as a real xl that `process.run` kills (SIGKILL) ends: a save past its
suspend point leaves the guest suspended (`---ss-`), nothing resumes it; a
half-built domain goes.
"""

from __future__ import annotations

import asyncio
import io
import math
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from ..errors import CommandFailed, CommandTimedOut
from ..model import AutoConfig, Domain, DomainState, HostInfo
from ..toolstack.port import Toolstack
from ..toolstack.xl import split_migrate_target, translate_migrate_for_xl, translate_shutdown_for_xl
from . import host
from .runtime import Run
from .simerrors import SimExit
from .xlcfg import ConfigSyntaxError, parse
from .xlcmd import info_lines
from .xlcmd import main as xl_main


async def _drive(gen) -> int:
    try:
        delay = next(gen)
        while True:
            if delay == math.inf:
                await asyncio.Event().wait()
            elif delay > 0:
                await asyncio.sleep(delay)
            else:
                await asyncio.sleep(0)
            delay = gen.send(None)
    except StopIteration as stop:
        return int(stop.value or 0)


class SimToolstack(Toolstack):
    """The xl flavour of the simulated host, in-process."""

    name = "xl"

    def __init__(self, state_dir: str | os.PathLike[str]):
        super().__init__()
        self.state_dir = Path(state_dir)
        host.init_state(self.state_dir)

    def peer_argv(self, ssh: Sequence[str], host: str, *command: str) -> list[str]:
        """The simulated pool's ssh (what the ssh shim runs), with ssh's options: no PATH needed."""
        return [sys.executable, "-m", "xdcore.sim.pool", "--state", str(self.state_dir), *ssh[1:], host, *command]

    # -- running a command ------------------------------------------------------------

    async def run_xl(self, *args: str, timeout: float | None = None, check: bool = True) -> tuple[int, str, str]:
        """Run `xl ARGS` in-process: (rc, stdout, stderr); raise like process.run."""
        argv = ("xl", *args)
        out, err = io.StringIO(), io.StringIO()
        run = Run(self.state_dir, "xl", out, err)
        gen = xl_main(run, list(args))
        started = time.monotonic()
        for obs in self.observers:
            obs("start", argv, os.getpid(), float(timeout or 0), "")

        async def body() -> int:
            try:
                return await _drive(gen)
            except SimExit as exc:
                if exc.stdout:
                    out.write(exc.stdout)
                if exc.stderr:
                    err.write(exc.stderr)
                return exc.code
            except BaseException:  # timed out or cancelled: killed, as process.run kills a real xl
                gen.close()
                run.killed = True
                run.run_aborts()
                raise

        try:
            if timeout and timeout > 0:
                rc = await asyncio.wait_for(body(), timeout)
            else:
                rc = await body()
        except asyncio.TimeoutError:
            for obs in self.observers:
                obs("end", argv, None, time.monotonic() - started, err.getvalue())
            raise CommandTimedOut(argv, float(timeout or 0), err.getvalue()) from None
        except asyncio.CancelledError:
            for obs in self.observers:
                obs("end", argv, None, time.monotonic() - started, err.getvalue())
            raise
        from .tool import record, subcommand
        from . import xlcmd

        if subcommand("xl", list(args)) in xlcmd.MUTATING:
            record(self.state_dir, "xl", list(args), rc, time.time() - (time.monotonic() - started))
        for obs in self.observers:
            obs("end", argv, rc, time.monotonic() - started, err.getvalue())
        if check and rc != 0:
            raise CommandFailed(argv, rc, err.getvalue())
        return rc, out.getvalue(), err.getvalue()

    # -- queries ------------------------------------------------------------------------

    async def list_domains(self) -> list[Domain]:
        st = host.load(self.state_dir)
        now = time.time()
        return [
            Domain(  # as the xl adapter reads `xl list -l` + `xl list`: a dying domain is "(null)", no config
                domid=d.domid, name=host.xl_name(d), uuid=None if d.dying else d.uuid,
                memory_mib=d.current_kib // 1024, maxmem_mib=d.maxmem_kib // 1024, vcpus=d.online_vcpus,
                cpu_time=round(host.c_float_seconds(d.cpu_time_now(now)), 1),
                state=DomainState.from_flags(d.flags), has_config=d.userdata is not None and not d.dying,
                domain_type=(d.userdata or {}).get("c_info", {}).get("type", d.domain_type),
                nameless=d.dying,
            )
            for d in sorted(st.domains, key=lambda d: d.domid)
        ]

    async def config_names(self, paths: Sequence[Path]) -> list[AutoConfig]:
        result = []
        for p in paths:
            path = Path(p)
            try:
                text = path.read_text(errors="replace")
            except OSError as exc:
                result.append(AutoConfig(path, None, f"cannot read {path}: {exc.strerror or exc}"))
                continue
            try:
                name = parse(text, str(path)).get_string("name")
            except ConfigSyntaxError as exc:
                result.append(AutoConfig(path, None, "; ".join(exc.lines)))
                continue
            result.append(AutoConfig(path, name) if name else
                          AutoConfig(path, None, "Domain name must be specified."))
        return result

    async def host_info(self) -> HostInfo:
        raw = dict(info_lines(host.load(self.state_dir)))
        return HostInfo(total_memory_mib=int(raw["total_memory"]), free_memory_mib=int(raw["free_memory"]),
                        nr_cpus=int(raw["nr_cpus"]), xen_version=raw["xen_version"], host=raw["host"], raw=raw)

    async def xenstore_domid(self) -> int | None:
        st = host.load(self.state_dir)
        return next((d.domid for d in st.domains if d.xs_domain), None)

    # -- actions ------------------------------------------------------------------------

    async def create(self, config: Path, timeout: float | None = None) -> None:
        await self.run_xl("create", "--quiet", "--defconfig", str(config), timeout=timeout)

    async def restore(self, image: Path, timeout: float | None = None) -> None:
        await self.run_xl("restore", str(image), timeout=timeout)

    async def save(self, domid: int, path: Path, timeout: float | None = None) -> None:
        await self.run_xl("save", str(domid), str(path), timeout=timeout)

    async def migrate(self, domid: int, target: Sequence[str], timeout: float | None = None) -> None:
        words, _ = self.translate_migrate_options(target)
        options, dest = split_migrate_target(words, frozenset({"-s", "-C"}))
        await self.run_xl("migrate", *options, str(domid), dest, timeout=timeout)

    async def shutdown(self, domid: int, options: Sequence[str], timeout: float | None = None) -> None:
        opts, _ = self.translate_shutdown_options(options)
        await self.run_xl("shutdown", *opts, str(domid), timeout=timeout)

    async def shutdown_all(self, options: Sequence[str], timeout: float | None = None) -> None:
        opts, _ = self.translate_shutdown_options(options, key="XENDOMAINS_SHUTDOWN_ALL")
        if not any(o in ("-a", "--all") or (o.startswith("-") and not o.startswith("--") and "a" in o)
                   for o in opts):
            opts = ["--all", *opts]
        await self.run_xl("shutdown", *opts, timeout=timeout)

    async def sysrq(self, domid: int, key: str, timeout: float | None = None) -> None:
        await self.run_xl("sysrq", str(domid), key, timeout=timeout)

    async def destroy(self, domid: int, timeout: float | None = None) -> None:
        await self.run_xl("destroy", str(domid), timeout=timeout)

    def translate_shutdown_options(self, options: Sequence[str], key: str = "XENDOMAINS_SHUTDOWN"):
        return translate_shutdown_for_xl(options, key)

    def translate_migrate_options(self, words: Sequence[str], key: str = "XENDOMAINS_MIGRATE"):
        return translate_migrate_for_xl(words, key)
