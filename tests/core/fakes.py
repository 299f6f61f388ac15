"""An in-memory toolstack for fast unit tests of the pipelines (end-to-end tests use the simulator's xl)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from xdcore.errors import CommandFailed, CommandTimedOut
from xdcore.model import XL_SAVE_MAGIC, AutoConfig, Domain, DomainState, HostInfo
from xdcore.toolstack.port import Toolstack
from xdcore.toolstack.xl import translate_migrate_for_xl, translate_shutdown_for_xl


@dataclass
class FakeToolstack(Toolstack):
    """Guests in a dict; `fail`/`hang`/`delay` keyed by (op, guest name) drive faults."""

    domains: dict[int, Domain] = field(default_factory=dict)
    fail: set[tuple[str, str]] = field(default_factory=set)
    hang: set[tuple[str, str]] = field(default_factory=set)
    delay: dict[str, float] = field(default_factory=dict)
    calls: list[tuple[str, ...]] = field(default_factory=list)
    configs: dict[Path, str] = field(default_factory=dict)
    name: str = "xl"
    #: flags of the nameless row a shut-down guest leaves listed (as real xl shows `(null) --ps--` a moment)
    leave_after_shutdown: str | None = None

    def __post_init__(self) -> None:
        Toolstack.__init__(self)
        self.domains.setdefault(0, Domain(0, "Domain-0", memory_mib=2048, state=DomainState.from_flags("r-----")))
        self.next_id = max(self.domains) + 1

    def add(self, name: str, mem: int = 512, flags: str = "-b----") -> Domain:
        d = Domain(self.next_id, name, memory_mib=mem, vcpus=1, state=DomainState.from_flags(flags))
        self.domains[d.domid] = d
        self.next_id += 1
        return d

    def by_name(self, name: str) -> Domain | None:
        return next((d for d in self.domains.values() if d.name == name), None)

    async def _op(self, op: str, guest: str, argv: tuple[str, ...], timeout: float | None) -> None:
        self.calls.append(argv)
        if (op, guest) in self.hang:
            try:
                await asyncio.wait_for(asyncio.Event().wait(), timeout)
            except asyncio.TimeoutError:
                raise CommandTimedOut(argv, timeout or 0) from None
        if self.delay.get(op):
            await asyncio.sleep(self.delay[op])
        if (op, guest) in self.fail:
            raise CommandFailed(argv, 1, f"{op} of {guest} failed (fake)\n")

    def _name(self, domid: int) -> str:
        d = self.domains.get(domid)
        return d.name if d else str(domid)

    async def list_domains(self) -> list[Domain]:
        self.calls.append(("xl", "list"))
        return [self.domains[k] for k in sorted(self.domains)]

    async def config_names(self, paths: Sequence[Path]) -> list[AutoConfig]:
        return [AutoConfig(Path(p), self.configs.get(Path(p), Path(p).name)) for p in paths]

    async def host_info(self) -> HostInfo:
        return HostInfo(16384, 8192, 4, "4.17", "fake")

    async def create(self, config: Path, timeout: float | None = None) -> None:
        name = self.configs.get(Path(config), Path(config).name)
        await self._op("create", name, ("xl", "create", "--quiet", "--defconfig", str(config)), timeout)
        self.add(name)

    async def restore(self, image: Path, timeout: float | None = None) -> None:
        from xdcore.savedir import image_guest_name

        name = image_guest_name(Path(image)) or Path(image).name
        await self._op("restore", name, ("xl", "restore", str(image)), timeout)
        self.add(name)

    async def save(self, domid: int, path: Path, timeout: float | None = None) -> None:
        name = self._name(domid)
        Path(path).write_bytes(b"partial")
        await self._op("save", name, ("xl", "save", str(domid), str(path)), timeout)
        import json
        import struct

        cfg = json.dumps({"c_info": {"name": name}}).encode() + b"\0"
        Path(path).write_bytes(XL_SAVE_MAGIC + struct.pack("<IIIII", 0x01020304, 3, 0, 4 + len(cfg), len(cfg)) + cfg)
        del self.domains[domid]

    async def migrate(self, domid: int, target: Sequence[str], timeout: float | None = None) -> None:
        name = self._name(domid)
        await self._op("migrate", name, ("xl", "migrate", *target[:-1], str(domid), *target[-1:]), timeout)
        del self.domains[domid]

    async def shutdown(self, domid: int, options: Sequence[str], timeout: float | None = None) -> None:
        name = self._name(domid)
        await self._op("shutdown", name, ("xl", "shutdown", *options, str(domid)), timeout)
        if self.leave_after_shutdown and domid in self.domains:
            self.domains[domid] = Domain(domid, "(null)", memory_mib=96, vcpus=1, has_config=False, nameless=True,
                                         state=DomainState.from_flags(self.leave_after_shutdown))
        else:
            self.domains.pop(domid, None)

    async def shutdown_all(self, options: Sequence[str], timeout: float | None = None) -> None:
        await self._op("shutdown_all", "", ("xl", "shutdown", *options), timeout)
        for k in [k for k, d in self.domains.items() if k and not d.zombie]:
            del self.domains[k]

    async def sysrq(self, domid: int, key: str, timeout: float | None = None) -> None:
        await self._op("sysrq", self._name(domid), ("xl", "sysrq", str(domid), key), timeout)

    async def destroy(self, domid: int, timeout: float | None = None) -> None:
        await self._op("destroy", self._name(domid), ("xl", "destroy", str(domid)), timeout)
        self.domains.pop(domid, None)

    def translate_shutdown_options(self, options, key="XENDOMAINS_SHUTDOWN"):
        return translate_shutdown_for_xl(options, key)

    def translate_migrate_options(self, words, key="XENDOMAINS_MIGRATE"):
        return translate_migrate_for_xl(words, key)
