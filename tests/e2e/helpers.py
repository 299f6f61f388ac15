"""Run the installed `xendomains` as a subprocess against a simulated Xen host.

End-to-end tests drive the real console script with the simulator's `xl`/`xm`
shims first on PATH — no in-memory fakes — and judge the outcome from three
independent witnesses: the run's own `--json` events, the simulated host
(which domains exist, which commands ran: its history) and the files left in
the save directory.

    host = E2EHost.make(tmp_path, guests=[("web01", 1024, 2)], auto=["web01"])
    host.configure(XENDOMAINS_STOP_MAXWAIT=1)
    res = host.run("stop")
    assert res.returncode == 0 and res.outcomes == {"web01": "saved"}
    host.assert_save_dir_clean()
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from xdcore import events as ev
from xdcore.model import ImageKind, sniff_image
from xdcore.savedir import PARTIAL_PREFIX, QUARANTINE, image_path
from xdcore.sim import host as simhost
from xdcore.sim.images import read_xl
from xdcore.sim.simerrors import SimExit
from xdcore.sim.testing import HostLayout, add_domain, config_of, guest_config_text, make_host

RUN_TIMEOUT = 60.0


def xendomains_exe() -> str:
    """The installed console script (next to this interpreter, else on PATH)."""
    here = Path(sys.executable).parent / "xendomains"
    if here.exists():
        return str(here)
    found = shutil.which("xendomains")
    if found is None:
        raise RuntimeError("the xendomains console script is not installed (pip install -e .)")
    return found


def xdsim_exe() -> list[str]:
    here = Path(sys.executable).parent / "xdsim"
    return [str(here)] if here.exists() else [sys.executable, "-m", "xdcore.sim.cli"]


@dataclass
class Result:
    """One finished `xendomains` run: exit code, raw output and the parsed --json events."""

    argv: list[str]
    returncode: int
    stdout: str
    stderr: str
    events: list[ev.Event] = field(default_factory=list)

    def of(self, kind: type[ev.Event]) -> list:
        return [e for e in self.events if isinstance(e, kind)]

    @property
    def outcomes(self) -> dict[str, str]:
        """guest -> outcome of its GuestFinished event (the last one wins)."""
        return {e.guest: e.outcome for e in self.of(ev.GuestFinished)}

    def messages(self, *levels: str) -> list[ev.MessageLogged]:
        return [m for m in self.of(ev.MessageLogged) if not levels or m.level in levels]

    def text(self) -> str:
        """Everything a human would read: messages, event details and stderr."""
        parts = [m.text for m in self.messages()]
        parts += [getattr(e, "detail", "") or getattr(e, "reason", "") for e in self.events]
        parts.append(self.stderr)
        return "\n".join(p for p in parts if p)

    def message_about(self, guest: str, *words: str) -> ev.MessageLogged:
        """The first warning/error naming `guest` (in .guest or the text) and containing all `words`."""
        for m in self.messages("warning", "error"):
            if (m.guest == guest or guest in m.text) and all(w.lower() in m.text.lower() for w in words):
                return m
        raise AssertionError(
            f"no warning/error about {guest!r} containing {words!r}; messages were:\n"
            + "\n".join(f"  [{m.level}] ({m.guest}) {m.text}" for m in self.messages()) + f"\nstderr:\n{self.stderr}"
        )

    def stage_outcomes(self, guest: str) -> dict[str, str]:
        return {e.stage: e.outcome for e in self.of(ev.StageFinished) if e.guest == guest}

    def describe(self) -> str:
        return f"argv={self.argv} rc={self.returncode}\nstdout:\n{self.stdout[-4000:]}\nstderr:\n{self.stderr[-4000:]}"


def parse_events(stdout: str) -> list[ev.Event]:
    """The JSON event lines of a `--json` run (other lines, e.g. status output, are skipped)."""
    out = []
    for line in stdout.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            out.append(ev.from_json(line))
        except (ValueError, KeyError, TypeError):
            continue
    return out


def read_progress(path: Path) -> list[ev.Event]:
    try:
        return parse_events(path.read_text(encoding="utf-8", errors="replace"))
    except FileNotFoundError:
        return []


def image_is_complete(path: Path) -> bool:
    """A valid xl header and the whole stream (what `xl restore` would accept)."""
    if sniff_image(path) is not ImageKind.XL:
        return False
    try:
        return read_xl(str(path)).complete
    except SimExit:
        return False


@dataclass
class E2EHost:
    """A simulated host laid out under `root`, a config file for it, and ways to run xendomains."""

    root: Path
    layout: HostLayout
    config: Path
    lock: Path
    progress: Path
    path_dirs: list[Path]  # PATH entries put before the system PATH (the shims' dir by default)
    settings: dict[str, str] = field(default_factory=dict)

    # -- building ---------------------------------------------------------------------------

    @classmethod
    def make(cls, root: Path, guests=(), *, auto=(), saved=(), **settings: object) -> "E2EHost":
        root = Path(root)
        layout = make_host(root / "host", guests=guests, auto=auto, saved=saved, fast=True)
        h = cls(root=root, layout=layout, config=root / "xendomains.conf", lock=root / "lock" / "xendomains",
                progress=root / "run" / "progress.jsonl", path_dirs=[layout.bin_dir])
        h.settings = {
            "XENDOMAINS_SAVE": str(layout.save_dir),
            "XENDOMAINS_AUTO": str(layout.auto_dir),
            "XENDOMAINS_LOCKFILE": str(h.lock),
            "XENDOMAINS_PROGRESS": str(h.progress),
            "XENDOMAINS_STOP_MAXWAIT": "2",
            "XENDOMAINS_USLEEP": "0",
            "XENDOMAINS_CREATE_USLEEP": "0",
            "XENDOMAINS_MIGRATE": "",
            "XENDOMAINS_SHUTDOWN": "--wait",
            "XENDOMAINS_SHUTDOWN_ALL": "--all --wait",
        }
        h.configure(**settings)
        return h

    def add_guest(self, name: str, memory_mib: int = 512, vcpus: int = 1, *, flags: str = "-b----",
                  auto: bool = False) -> int:
        """Put a running guest on the host whatever its name (its config file gets a safe name)."""
        n = len(list(self.layout.configs_dir.glob("guest-*.cfg")))
        path = self.layout.configs_dir / f"guest-{n}.cfg"
        path.write_text(guest_config_text(name, memory_mib, vcpus), encoding="utf-8")
        self.layout.configs[name] = path
        if auto:
            (self.layout.auto_dir / path.name).symlink_to(path)
        return add_domain(self.state, config_of(path), config_path=str(path), flags=flags)

    def configure(self, **settings: object) -> Path:
        """Set keys (None removes one) and rewrite the config file with every value single-quoted."""
        for k, v in settings.items():
            if v is None:
                self.settings.pop(k, None)
            else:
                self.settings[k] = str(v)
        return self.write_config("".join(f"{k}={shlex.quote(v)}\n" for k, v in self.settings.items()))

    def write_config(self, text: str) -> Path:
        """Write the config file verbatim (for tests of quoting and metacharacters)."""
        self.config.write_text("# written by tests/e2e\n" + text, encoding="utf-8")
        return self.config

    @property
    def save_dir(self) -> Path:
        return self.layout.save_dir

    @property
    def state(self) -> Path:
        return self.layout.state_dir

    def env(self, path_dirs: Sequence[Path] | None = None, system_path: str | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("XENDOMAINS_")}
        dirs = list(self.path_dirs if path_dirs is None else path_dirs)
        base = os.environ.get("PATH", "/usr/bin:/bin") if system_path is None else system_path
        env["PATH"] = os.pathsep.join([*(str(d) for d in dirs), base])
        env["XDSIM_STATE"] = str(self.state)
        env["XENDOMAINS_SYSLOG"] = "no"
        env.pop("XENDOMAINS_CONFIG", None)
        return env

    # -- running xendomains -------------------------------------------------------------------------

    def argv(self, *args: str, json_out: bool = True) -> list[str]:
        return [xendomains_exe(), "--config", str(self.config), *(["--json"] if json_out else []), *args]

    def run(self, *args: str, json_out: bool = True, env: dict[str, str] | None = None,
            timeout: float = RUN_TIMEOUT) -> Result:
        argv = self.argv(*args, json_out=json_out)
        done = subprocess.run(argv, capture_output=True, text=True, env=env or self.env(), timeout=timeout)
        return Result(argv, done.returncode, done.stdout, done.stderr, parse_events(done.stdout) if json_out else [])

    def popen(self, *args: str, json_out: bool = True, env: dict[str, str] | None = None) -> subprocess.Popen:
        return subprocess.Popen(self.argv(*args, json_out=json_out), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env=env or self.env())

    @staticmethod
    def finish(proc: subprocess.Popen, timeout: float = RUN_TIMEOUT) -> Result:
        out, err = proc.communicate(timeout=timeout)
        return Result(list(proc.args), proc.returncode, out, err, parse_events(out))

    # -- the simulator --------------------------------------------------------------------------------

    def sim(self, *args: str) -> str:
        """Run `xdsim --state DIR ARGS…` (faults, latencies, guests)."""
        done = subprocess.run([*xdsim_exe(), "--state", str(self.state), *args], capture_output=True, text=True,
                              timeout=30)
        if done.returncode != 0:
            raise AssertionError(f"xdsim {' '.join(args)} failed: {done.stderr}")
        return done.stdout

    def xl(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["xl", *args], capture_output=True, text=True, env=self.env([self.layout.bin_dir]),
                              timeout=30)

    def domains(self) -> dict[str, simhost.DomainView]:
        """Guests on the host now (Domain-0 left out), by name."""
        return {d.name: d for d in simhost.load_snapshot(self.state).domains if d.domid != 0}

    def running(self) -> set[str]:
        return {n for n, d in self.domains().items() if not d.dying}

    def history(self, op: str | None = None) -> list[dict]:
        """State-changing commands the simulated xl ran (finished ones), optionally of one subcommand."""
        entries = simhost.load(self.state).history
        if op is None:
            return entries
        return [h for h in entries if h["argv"][1:2] == [op]]

    def add_peer(self, name: str, memory_mib: int, xen_version: str | None = None) -> Path:
        """Another simulated host beside this one (a pool member reachable by name); its state directory."""
        from xdcore.sim import pool

        if simhost.load(self.state).pool is None:
            pool.rename_self(self.state, "xen01")
        return Path(pool.add_member(self.state, name, memory_mib, xen_version=xen_version))

    def pool_member(self, name: str) -> Path:
        """The state directory of pool member `name`."""
        from xdcore.sim import pool

        return Path(pool.read(simhost.load(self.state).pool)[name]["state"])

    def pool_guests(self) -> dict[str, set[str]]:
        """host name -> guests running there, over the whole simulated pool (this host included)."""
        from xdcore.sim import pool

        members = pool.read(simhost.load(self.state).pool) or {"xen01": {"state": str(self.state)}}
        return {name: {d.name for d in simhost.load_snapshot(m["state"]).domains if d.domid != 0}
                for name, m in members.items()}

    def migrated_to(self, target: str) -> list[str]:
        return [g["name"] for g in simhost.load(self.state).targets.get(target, [])]

    # -- the save directory ------------------------------------------------------------------------------

    def image_of(self, guest: str) -> Path:
        return image_path(self.save_dir, guest)

    def has_valid_image(self, guest: str) -> bool:
        return image_is_complete(self.image_of(guest))

    def save_entries(self) -> list[Path]:
        try:
            return sorted(self.save_dir.iterdir())
        except FileNotFoundError:
            return []

    def assert_save_dir_clean(self, allow_partial: bool = False) -> None:
        """Every file in SAVE is a complete image; no hidden partial file (unless allowed); nothing escaped."""
        for p in self.save_entries():
            if p.name == QUARANTINE and p.is_dir():
                continue
            if p.name.startswith(PARTIAL_PREFIX) and allow_partial:
                continue
            assert not p.name.startswith("."), f"hidden leftover in the save directory: {p}"
            assert p.is_file() and not p.is_symlink(), f"not a regular file in the save directory: {p}"
            assert image_is_complete(p), f"{p} is in the save directory but is not a complete save image"

    def partials(self) -> list[Path]:
        return [p for p in self.save_entries() if p.name.startswith(PARTIAL_PREFIX)]

    def assert_lock_gone(self) -> None:
        assert not os.path.lexists(self.lock), f"the lock file {self.lock} is still there after stop"


def kill_xl_children(bin_dir: Path, also: Iterable[int] = ()) -> list[int]:
    """SIGKILL every process running one of the shims in bin_dir (what systemd's KillMode=control-group does)."""
    import psutil

    marks = {str(bin_dir / "xl"), str(bin_dir / "xm")}
    victims = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        try:
            cmd = p.info["cmdline"] or []
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if p.pid in also or any(c in marks for c in cmd):
            victims.append(p)
    for p in victims:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(victims, timeout=5)
    return [p.pid for p in victims]
