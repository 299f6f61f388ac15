"""The scenario runner: runs in the test dom0 (Debian's python3.11, stdlib only), on real Xen.

    python3 scenarios.py OUT        # OUT/request.json names the scenarios, in order

Each scenario drives the installed `xendomains` (and `xl` itself where it sets the
scene) and records *facts*: what real `xl list` showed, what the guests wrote on
their consoles (/var/log/xen/console), which files exist — not what xendomains
printed (that is kept too, for the failure messages).  It writes
OUT/NAME/result.json and copies the logs it looked at beside it; the pytest side
(tests/realxen/test_realxen.py) asserts on them.

Guests: busybox PV guests with Debian's kernel (96 MiB, the least it boots in),
printing `GUEST-UP boot=<boot id>` once and `guest-alive <uptime>` every second.
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

CONSOLE_DIR = Path("/var/log/xen/console")
WORK = Path("/tmp/xd")
GUEST_MEM = 96
XENDOMAINS = "/usr/local/bin/xendomains"
OPTIONS: dict = {}  # request.json's "options"

#: every scenario, in the order one boot runs them (start → stop → sysrq chain the same three guests)
ORDER = ["xlsave", "start", "stop", "sysrq", "watchdog", "badsave", "killsave", "parallel", "migrate"]


def uptime() -> float:
    return float(Path("/proc/uptime").read_text().split()[0])


# ---------------------------------------------------------------------------------------- xl facts


def xl_list() -> list[dict]:
    """Real `xl list`, parsed: name, domid, mem, vcpus, state, time."""
    out = subprocess.run(["xl", "list"], capture_output=True, text=True).stdout
    rows = []
    for line in out.splitlines()[1:]:
        m = re.match(r"^(.*?)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\S+)\s+([\d.]+)\s*$", line)
        if m:
            rows.append({"name": m[1].strip(), "domid": int(m[2]), "mem": int(m[3]), "vcpus": int(m[4]),
                         "state": m[5], "time": float(m[6])})
    return rows


def guests() -> list[dict]:
    return [d for d in xl_list() if d["domid"] != 0]


def console(name: str) -> str:
    try:
        return (CONSOLE_DIR / f"guest-{name}.log").read_text(errors="replace")
    except FileNotFoundError:
        return ""


def boots(name: str) -> list[str]:
    """The boot ids the guest's console announced, in order."""
    return re.findall(r"GUEST-UP boot=(\S+)", console(name))


def heartbeats(name: str) -> list[float]:
    return [float(x) for x in re.findall(r"guest-alive ([\d.]+)", console(name))]


def wait(pred, timeout: float, what: str, interval: float = 0.2):
    end = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > end:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def wait_heartbeat_after(name: str, after: float, timeout: float = 60) -> float:
    return wait(lambda: next((h for h in heartbeats(name) if h > after), None), timeout,
                f"a heartbeat of {name} after uptime {after}")


def guest_cfg(name: str, mode: str = "normal", memory: int = GUEST_MEM) -> str:
    return (f'name = "{name}"\ntype = "pv"\nkernel = "/guest/kernel"\nramdisk = "/guest/initrd.gz"\n'
            f'extra = "console=hvc0 loglevel=4 xdguest={mode}"\nmemory = {memory}\nvcpus = 1\n'
            'on_poweroff = "destroy"\non_reboot = "restart"\non_crash = "destroy"\n')


class Scenario:
    def __init__(self, name: str, out: Path):
        self.name = name
        self.out = out
        self.dir = WORK / name
        self.steps: list[dict] = []
        self.facts: dict = {}
        self.guest_names: set[str] = set()
        self.out.mkdir(parents=True, exist_ok=True)
        self.dir.mkdir(parents=True, exist_ok=True)

    # -- commands --------------------------------------------------------------------------

    def run(self, *argv: str, timeout: float = 300, label: str | None = None, env: dict | None = None) -> dict:
        t0 = uptime()
        try:
            done = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout,
                                  env=None if env is None else dict(os.environ, **env))
            rc, out, err = done.returncode, done.stdout, done.stderr
        except subprocess.TimeoutExpired as exc:
            rc, out, err = "timeout", _text(exc.stdout), _text(exc.stderr)
        step = {"label": label or " ".join(argv[:3]), "argv": list(argv), "rc": rc, "stdout": out[-20000:],
                "stderr": err[-20000:], "t0": t0, "secs": round(uptime() - t0, 2)}
        self.steps.append(step)
        print(f"[{self.name}] {step['label']}: rc={rc} {step['secs']}s", flush=True)
        return step

    def xl(self, *args: str, timeout: float = 120) -> dict:
        return self.run("xl", *args, timeout=timeout, label="xl " + " ".join(args))

    def xd(self, conf: Path, *args: str, timeout: float = 600) -> dict:
        return self.run(XENDOMAINS, "--config", str(conf), *args, timeout=timeout, label="xendomains " + " ".join(args))

    def conf(self, **keys: str) -> Path:
        """A xendomains config of this scenario's own (lock, progress, auto and save dirs under self.dir)."""
        base = {"XENDOMAINS_AUTO": str(self.dir / "auto"), "XENDOMAINS_SAVE": str(self.dir / "save"),
                "XENDOMAINS_LOCKFILE": str(self.dir / "run/lock"),
                "XENDOMAINS_PROGRESS": str(self.dir / "run/progress.jsonl"),
                "XENDOMAINS_CREATE_USLEEP": "0", "XENDOMAINS_USLEEP": "0", "XENDOMAINS_STOP_MAXWAIT": "120",
                "XENDOMAINS_SHUTDOWN": "--wait", "XENDOMAINS_SHUTDOWN_ALL": "--all --wait"}
        base.update(keys)
        (self.dir / "auto").mkdir(exist_ok=True)
        (self.dir / "run").mkdir(exist_ok=True)
        p = self.dir / "xendomains.conf"
        p.write_text("".join(f'{k}="{v}"\n' for k, v in base.items()))
        return p

    def cfg(self, name: str, mode: str = "normal", auto: bool = False) -> Path:
        self.guest_names.add(name)
        p = (self.dir / "auto" if auto else self.dir) / f"{name}.cfg"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(guest_cfg(name, mode))
        return p

    def create(self, name: str, mode: str = "normal", wait_up: bool = True) -> int:
        """`xl create` a guest (not through xendomains) and wait for its heartbeat."""
        n = len(boots(name))
        step = self.xl("create", str(self.cfg(name, mode)))
        if step["rc"] != 0:
            raise RuntimeError(f"xl create {name} failed: {step['stderr'][-500:]}")
        if wait_up:
            self.wait_booted(name, n)
        return self.domid(name)

    def wait_booted(self, name: str, before: int = 0) -> None:
        wait(lambda: len(boots(name)) > before, 120, f"{name} to boot")
        wait(lambda: len(re.findall(r"guest-alive", console(name).split("GUEST-UP")[-1])) >= 1, 60,
             f"the first heartbeat of {name}")

    def domid(self, name: str) -> int | None:
        return next((d["domid"] for d in xl_list() if d["name"] == name), None)

    def snapshot(self, key: str) -> list[dict]:
        rows = xl_list()
        self.facts.setdefault("xl_list", {})[key] = rows
        return rows

    def keep_file(self, src: Path | str, name: str | None = None) -> None:
        src = Path(src)
        if src.exists():
            shutil.copy(src, self.out / (name or src.name))

    # -- end -------------------------------------------------------------------------------

    def finish(self, error: str | None, t0: float) -> None:
        for g in sorted(self.guest_names):
            self.facts.setdefault("console", {})[g] = console(g)[-30000:]
        for f in ("last-stop.json", "last-start.json", "progress.jsonl"):
            self.keep_file(self.dir / "run" / f, f)
        result = {"scenario": self.name, "error": error, "facts": self.facts, "steps": self.steps,
                  "seconds": round(uptime() - t0, 1), "xl_list_end": xl_list()}
        tmp = self.out / "result.json.tmp"
        tmp.write_text(json.dumps(result, indent=1, default=str))
        tmp.rename(self.out / "result.json")


def _text(b) -> str:
    if b is None:
        return ""
    return b.decode(errors="replace") if isinstance(b, bytes) else b


def commands_run(progress: Path) -> list[list[str]]:
    """The argv of every command the run started, from its progress file (what xendomains ran, in order)."""
    try:
        lines = progress.read_text().splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        try:
            e = json.loads(line)
        except ValueError:
            continue
        if e.get("event") == "command_started":
            out.append(list(e.get("argv", [])))
    return out


def destroy_all(except_names: set[str] = frozenset()) -> None:
    for d in guests():
        if d["name"] not in except_names and d["state"][5:6] != "d":
            subprocess.run(["xl", "destroy", str(d["domid"])], capture_output=True)


def proc_cmdlines() -> list[tuple[int, list[str]]]:
    out = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                out.append((int(p.name), (p / "cmdline").read_bytes().decode(errors="replace").split("\0")[:-1]))
            except OSError:
                pass
    return out


def xl_procs(verb: str) -> list[int]:
    return [pid for pid, argv in proc_cmdlines() if len(argv) >= 2 and argv[0].endswith("xl") and argv[1] == verb]


def image_header(p: Path, n: int = 4096) -> bytes:
    with open(p, "rb") as f:
        return f.read(n)


# ============================================================================================ scenarios


def scn_xlsave(sc: Scenario) -> None:
    """Fidelity: real outputs, and what `xl save` does when whoever started it dies.

    A. xl save in its own session, stdout/stderr to a file, its parent SIGKILLed: does it finish?
    B. xl save with stdout/stderr on pipes whose reader goes away mid-save: SIGPIPE? the domain?
    """
    f = sc.facts
    f["xl_info"] = sc.xl("info")
    f["xl_list_dom0only"] = sc.xl("list")
    sc.create("probe")
    f["xl_list"] = sc.xl("list")
    f["xl_list_l"] = sc.xl("list", "-l")
    f["xl_list_l_one"] = sc.xl("list", "-l", "probe")
    f["xl_list_v"] = sc.xl("list", "-v")

    # A: own session, output to a file, parent killed right after the start
    img_a = sc.dir / "probe-a.img"
    errf = sc.dir / "a.stderr"
    parent = subprocess.Popen(["sh", "-c", f"setsid xl save probe {img_a} >{errf} 2>&1 & echo $! >{sc.dir}/a.pid; "
                                           "exec sleep 1000"])
    pid = int(wait(lambda: (sc.dir / "a.pid").exists() and (sc.dir / "a.pid").read_text().strip(), 20, "a.pid"))
    wait(lambda: img_a.exists() and img_a.stat().st_size > 1 << 20, 60, "the A image to grow")
    parent.kill()
    parent.wait()
    f["a_size_at_parent_kill"] = img_a.stat().st_size
    f["a_list_after_parent_kill"] = sc.xl("list")
    wait(lambda: not Path(f"/proc/{pid}").exists() or Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z",
         120, "xl save A to end")
    f["a_size_final"] = img_a.stat().st_size
    f["a_stderr"] = errf.read_text(errors="replace")
    f["a_list_after"] = sc.xl("list")
    f["a_header"] = image_header(img_a).hex()
    sc.out.joinpath("save_image_head.bin").write_bytes(image_header(img_a))
    last = max(heartbeats("probe"), default=0.0)
    f["a_restore"] = sc.xl("restore", str(img_a))
    f["a_heartbeat_after_restore"] = wait_heartbeat_after("probe", last)
    f["a_boots"] = boots("probe")
    img_a.unlink()

    # B: the reader of xl's stdout/stderr goes away while the save is running
    img_b = sc.dir / "probe-b.img"
    p = subprocess.Popen(["xl", "save", "probe", str(img_b)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         start_new_session=True)
    first = p.stderr.readline().decode(errors="replace")
    wait(lambda: img_b.exists() and img_b.stat().st_size > 20 << 20, 60, "the B image to pass 20 MB")
    f["b_first_stderr_line"] = first
    f["b_size_at_close"] = img_b.stat().st_size
    p.stderr.close()
    p.stdout.close()
    try:
        f["b_returncode"] = p.wait(timeout=90)
    except subprocess.TimeoutExpired:
        f["b_returncode"] = "still running after 90s"
    f["b_helpers_left"] = [argv for _, argv in proc_cmdlines() if argv and "libxl-save-helper" in argv[0]]
    time.sleep(2)
    f["b_size_final"] = img_b.stat().st_size
    f["b_list_after"] = sc.xl("list")
    hb = heartbeats("probe")
    time.sleep(4)
    f["b_heartbeat_moved"] = heartbeats("probe")[-1:] != hb[-1:]
    f["b_restore_partial"] = sc.xl("restore", str(img_b))
    f["b_shutdown_suspended"] = sc.run("xl", "shutdown", "-w", "probe", timeout=20, label="xl shutdown -w probe")
    f["b_list_after_shutdown"] = sc.xl("list")
    # can the guest a dead save left suspended be saved again (and so be recovered)?
    img_b2 = sc.dir / "probe-b2.img"
    f["b_save_suspended"] = sc.run("xl", "save", "probe", str(img_b2), timeout=90, label="xl save (suspended) probe")
    f["b_list_after_save_suspended"] = sc.xl("list")
    if f["b_save_suspended"]["rc"] == 0:
        f["b_restore_resaved"] = sc.xl("restore", str(img_b2))
        f["b_heartbeat_after_resave"] = wait_heartbeat_after("probe", max(heartbeats("probe")), timeout=30) \
            if f["b_restore_resaved"]["rc"] == 0 else None
        f["b_boots_after_resave"] = boots("probe")
    img_b2.unlink(missing_ok=True)
    f["b_destroy"] = sc.xl("destroy", "probe")
    f["b_list_final"] = sc.xl("list")
    f["b_restore_truncated"] = sc.xl("restore", str(img_b))
    f["b_list_after_restore_truncated"] = sc.xl("list")
    destroy_all()
    img_b.unlink()
    f["python_start"] = sc.run("python3", "-c", "pass", label="python3 -c pass")
    f["python_import_cli"] = sc.run("python3", "-X", "importtime", "-c", "import xdcore.cli",
                                    label="python3 -X importtime -c import xdcore.cli")
    f["save_nosuch"] = sc.xl("save", "nosuch", str(sc.dir / "x.img"))


def scn_start(sc: Scenario) -> None:
    """`start` with two auto configs and one saved image: the image is restored, the others created."""
    f = sc.facts
    sc.create("gamma")
    wait(lambda: len(heartbeats("gamma")) >= 3, 30, "three heartbeats of gamma")
    save = sc.dir / "save"
    save.mkdir()
    f["gamma_boot_before"] = boots("gamma")
    f["gamma_save"] = sc.xl("save", "gamma", str(save / "gamma"))
    f["gamma_last_heartbeat_before"] = max(heartbeats("gamma"))
    sc.cfg("alpha", auto=True)
    sc.cfg("beta", auto=True)
    conf = sc.conf(XENDOMAINS_PARALLEL="2")
    sc.snapshot("before")
    f["start"] = sc.xd(conf, "start")
    sc.snapshot("after_start")
    for g in ("alpha", "beta"):
        sc.wait_booted(g)
    f["gamma_heartbeat_after"] = wait_heartbeat_after("gamma", f["gamma_last_heartbeat_before"])
    f["save_dir_after"] = sorted(os.listdir(save))
    f["status"] = sc.xd(conf, "status")
    f["lock_exists"] = (sc.dir / "run/lock").exists()
    sc.snapshot("end")
    f["boots"] = {g: boots(g) for g in ("alpha", "beta", "gamma")}


def scn_stop(sc: Scenario) -> None:
    """`stop` with XENDOMAINS_SAVE: every guest saved, images whole, lock gone; `start` restores them."""
    f = sc.facts
    sc.dir = WORK / "start"  # the service `start` started: its auto dir, save dir and lock
    names = ["alpha", "beta", "gamma"]
    sc.guest_names.update(names)
    conf = sc.conf(XENDOMAINS_PARALLEL="3")
    f["lock_exists_before_stop"] = (sc.dir / "run/lock").exists()
    sc.snapshot("before")
    f["boots_before"] = {g: boots(g) for g in names}
    f["heartbeat_before"] = {g: max(heartbeats(g), default=0.0) for g in names}
    tui = TuiWatcher(sc, conf) if OPTIONS.get("tui", True) else None
    if tui:
        tui.start()
    f["stop"] = sc.xd(conf, "stop")
    if tui:
        tui.finish()
    sc.snapshot("after_stop")
    save = sc.dir / "save"
    f["save_dir_after_stop"] = {p.name: {"size": p.stat().st_size, "head": image_header(p, 64).hex()}
                                for p in sorted(save.iterdir()) if p.is_file()}
    f["lock_exists_after_stop"] = (sc.dir / "run/lock").exists()
    f["start"] = sc.xd(conf, "start")
    sc.snapshot("after_start")
    f["heartbeat_after"] = {g: wait_heartbeat_after(g, f["heartbeat_before"][g]) for g in names}
    f["save_dir_after_start"] = sorted(os.listdir(save))
    f["boots_after"] = {g: boots(g) for g in names}
    sc.snapshot("end")


def scn_sysrq(sc: Scenario) -> None:
    """SysRq then shutdown (XENDOMAINS_SAVE=""): the consoles show the SysRq and a clean poweroff."""
    f = sc.facts
    sc.dir = WORK / "start"
    names = ["alpha", "beta", "gamma"]
    sc.guest_names.update(names)
    conf = sc.conf(XENDOMAINS_SAVE="", XENDOMAINS_SYSRQ="s", XENDOMAINS_PARALLEL="3")
    sc.snapshot("before")
    f["console_len_before"] = {g: len(console(g)) for g in names}
    seen_rows: dict[tuple, float] = {}
    done = threading.Event()

    def watch() -> None:  # what `xl list` shows while the guests go down (a "(null)" passes by)
        while not done.wait(0.3):
            for d in guests():
                seen_rows.setdefault((d["name"], d["domid"], d["state"]), uptime())

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    f["stop"] = sc.xd(conf, "stop")
    done.set()
    watcher.join()
    f["rows_seen"] = [{"name": k[0], "domid": k[1], "state": k[2], "at": v} for k, v in sorted(seen_rows.items(), key=lambda kv: kv[1])]
    f["commands_run"] = commands_run(sc.dir / "run/progress.jsonl")  # (their monitors destroy them: no destroy)
    sc.snapshot("after_stop")
    time.sleep(1)  # xenconsoled writes the last lines as the ring drains
    f["console_during"] = {g: console(g)[f["console_len_before"][g]:] for g in names}


class TuiWatcher:
    """`xdtui` on a tmux pane in dom0, following the stop; the pane is captured as the run goes."""

    def __init__(self, sc: Scenario, conf: Path):
        self.sc, self.conf = sc, conf
        self.captures: list[str] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def pane(self) -> str:
        return subprocess.run(["tmux", "capture-pane", "-p", "-t", "xdtui"], capture_output=True, text=True).stdout

    def start(self) -> None:
        env = dict(os.environ, TERM="xterm-256color")
        r = subprocess.run(["tmux", "-u", "new-session", "-d", "-s", "xdtui", "-x", "120", "-y", "40",
                            f"xdtui --config {self.conf} --attach --no-mouse; echo XDTUI-EXIT $?; sleep 600"],
                           env=env, capture_output=True, text=True)
        self.sc.facts["tui_tmux_rc"] = r.returncode
        self.sc.facts["tui_tmux_err"] = r.stderr
        try:
            wait(lambda: self.pane().strip(), 240, "xdtui to draw", 1.0)
            self.sc.facts["tui_ready"] = True
        except TimeoutError:
            self.sc.facts["tui_ready"] = False
        self.captures.append(self.pane())
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(1.5):
            self.captures.append(self.pane())

    def finish(self) -> None:
        time.sleep(3)
        self._stop.set()
        if self._thread:
            self._thread.join()
        self.captures.append(self.pane())
        self.sc.facts["tui_captures"] = self.captures
        (self.sc.out / "xdtui-capture.txt").write_text("\n\f\n".join(self.captures))
        subprocess.run(["tmux", "kill-server"], capture_output=True)


class ProcSampler:
    """Samples the `xl` processes running (argv, first and last seen), and how many of each verb at once."""

    def __init__(self, interval: float = 0.1):
        self.interval = interval
        self.seen: dict[tuple, list] = {}
        self.peak: dict[str, int] = {}
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> "ProcSampler":
        self._t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._t.join()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            now = uptime()
            count: dict[str, int] = {}
            for pid, argv in proc_cmdlines():
                if len(argv) >= 2 and argv[0].endswith("/xl") or (argv[:1] == ["xl"] and len(argv) >= 2):
                    key = (pid, *argv[1:])
                    self.seen.setdefault(key, [now, now])[1] = now
                    count[argv[1]] = count.get(argv[1], 0) + 1
            for verb, n in count.items():
                self.peak[verb] = max(self.peak.get(verb, 0), n)

    def facts(self) -> dict:
        return {"commands": [{"pid": k[0], "args": list(k[1:]), "first": v[0], "last": v[1]}
                             for k, v in sorted(self.seen.items(), key=lambda kv: kv[1][0])],
                "peak": self.peak}


def scn_watchdog(sc: Scenario) -> None:
    """A guest whose init ignores the power-off: the watchdog kills the shutdown, shutdown-all, the report names it."""
    f = sc.facts
    sc.create("stubborn", mode="ignore-poweroff")
    conf = sc.conf(XENDOMAINS_SAVE="", XENDOMAINS_STOP_MAXWAIT="15")
    sc.snapshot("before")
    with ProcSampler() as ps:
        f["stop"] = sc.xd(conf, "stop")
    f["xl_seen"] = ps.facts()
    sc.snapshot("after_stop")
    f["xl_left"] = [argv for _, argv in proc_cmdlines() if argv[:1] and argv[0].endswith("xl")]
    rep = sc.dir / "run/last-stop.json"
    f["report"] = json.loads(rep.read_text()) if rep.exists() else None
    f["report_text"] = sc.xd(conf, "report", "stop")
    f["lock_exists"] = (sc.dir / "run/lock").exists()


def scn_badsave(sc: Scenario) -> None:
    """The save directory fills up during the save (a tmpfs, filled once `xl save` has begun writing):
    real `xl save` fails, the guest is shut down instead, nothing partial is left or restored at the next start."""
    f = sc.facts
    save = sc.dir / "save"
    save.mkdir()
    f["mount"] = sc.run("mount", "-t", "tmpfs", "-o", "size=160m", "tmpfs", str(save), label="mount tmpfs 160m")
    sc.create("filled")
    # first real xl alone on a file system too small for the image: its error, and the guest resumed
    small = sc.dir / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(small)])
    last = max(heartbeats("filled"))
    f["xl_save_enospc"] = sc.xl("save", "filled", str(small / "filled"))
    f["list_after_enospc"] = sc.xl("list")
    f["heartbeat_after_enospc"] = wait_heartbeat_after("filled", last, timeout=30)
    f["heartbeat_before_enospc"] = last
    subprocess.run(["umount", str(small)])
    conf = sc.conf(XENDOMAINS_SAVE=str(save), XENDOMAINS_STOP_MAXWAIT="60")
    partial = None
    done = threading.Event()

    def fill() -> None:  # once the save has written 8 MB, take the rest of the room
        nonlocal partial
        while not done.is_set():
            for p in save.iterdir() if save.exists() else ():
                if p.name != "filler" and p.is_file() and p.stat().st_size > 8 << 20:
                    partial = p.name
                    with open(save / "filler", "wb") as out:
                        try:
                            while True:
                                out.write(b"\0" * (1 << 20))
                        except OSError as exc:
                            f["filler_stopped"] = exc.strerror
                    return
            time.sleep(0.05)

    filler = threading.Thread(target=fill, daemon=True)
    filler.start()
    sc.snapshot("before")
    with ProcSampler() as ps:
        f["stop"] = sc.xd(conf, "stop")
    done.set()
    filler.join()
    f["xl_seen"] = ps.facts()
    f["partial_seen"] = partial
    f["domid"] = next((d["domid"] for d in f["xl_list"]["before"] if d["name"] == "filled"), None)
    f["commands_run"] = commands_run(sc.dir / "run/progress.jsonl")
    rep = sc.dir / "run/last-stop.json"
    f["report"] = json.loads(rep.read_text()) if rep.exists() else None
    sc.snapshot("after_stop")
    f["save_dir_after_stop"] = sorted(os.listdir(save))
    (save / "filler").unlink(missing_ok=True)
    f["start"] = sc.xd(conf, "start")
    sc.snapshot("after_start")
    f["save_dir_after_start"] = sorted(os.listdir(save))
    subprocess.run(["umount", str(save)])


def hold_zombie(domid: int):
    """Map one page of the guest (its console ring) from dom0 and keep it: destroyed, the domain stays dying."""
    fm = ctypes.CDLL("libxenforeignmemory.so.1")
    fm.xenforeignmemory_open.restype = ctypes.c_void_p
    fm.xenforeignmemory_open.argtypes = [ctypes.c_void_p, ctypes.c_uint]
    fm.xenforeignmemory_map.restype = ctypes.c_void_p
    fm.xenforeignmemory_map.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_size_t,
                                        ctypes.POINTER(ctypes.c_ulong), ctypes.POINTER(ctypes.c_int)]
    fm.xenforeignmemory_unmap.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
    h = fm.xenforeignmemory_open(None, 0)
    mfn = int(subprocess.run(["xenstore-read", f"/local/domain/{domid}/console/ring-ref"], capture_output=True,
                             text=True).stdout.strip())
    arr = (ctypes.c_ulong * 1)(mfn)
    err = (ctypes.c_int * 1)()
    addr = fm.xenforeignmemory_map(h, domid, 1, 1, arr, err)
    if not addr or err[0]:
        raise RuntimeError(f"xenforeignmemory_map of dom{domid} mfn {mfn:#x} failed (err {err[0]})")

    def release() -> None:
        fm.xenforeignmemory_unmap(h, addr, 1)
        fm.xenforeignmemory_close(ctypes.c_void_p(h))

    return release


def scn_parallel(sc: Scenario) -> None:
    """Parallel stop of 4 guests beside a zombie (a destroyed guest dom0 still maps a page of): the 4 are saved
    (several `xl save` at once), the zombie is never saved nor shut down."""
    f = sc.facts
    names = ["p1", "p2", "p3", "p4"]
    zid = sc.create("undead", wait_up=True)
    release = hold_zombie(zid)
    try:
        f["zombie_destroy"] = sc.xl("destroy", "undead")
        f["zombie_list"] = sc.xl("list")
        for n in names:
            sc.create(n, wait_up=False)
        for n in names:
            sc.wait_booted(n)
        conf = sc.conf(XENDOMAINS_PARALLEL="4", XENDOMAINS_PARALLEL_SAVE="4")  # (auto would cap saves at 2)
        sc.snapshot("before")
        f["xl_list_l_with_zombie"] = sc.xl("list", "-l")
        with ProcSampler(0.05) as ps:
            f["stop"] = sc.xd(conf, "stop")
        f["xl_seen"] = ps.facts()
        sc.snapshot("after_stop")
        save = sc.dir / "save"
        f["save_dir_after_stop"] = {p.name: p.stat().st_size for p in sorted(save.iterdir())} if save.exists() else {}
        f["report"] = json.loads((sc.dir / "run/last-stop.json").read_text()) \
            if (sc.dir / "run/last-stop.json").exists() else None
    finally:
        release()
    time.sleep(2)
    sc.snapshot("after_release")
    shutil.rmtree(sc.dir / "save", ignore_errors=True)


def scn_killsave(sc: Scenario) -> None:
    """`xendomains stop` SIGKILLed while its `xl save` is half way: the next `start` restores the guest."""
    f = sc.facts
    sc.create("victim")
    save = sc.dir / "save"
    conf = sc.conf()
    f["boots_before"] = boots("victim")
    last = max(heartbeats("victim"))
    stop = subprocess.Popen([XENDOMAINS, "--config", str(conf), "stop"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)

    def written() -> int:
        return sum(p.stat().st_size for p in save.glob(".xendomains-partial.*")) if save.exists() else 0

    wait(lambda: written() > 20 << 20, 180, "the save to pass 20 MB", 0.05)
    f["written_at_kill"] = written()
    os.kill(stop.pid, signal.SIGKILL)
    stop.wait()
    f["stop_output"] = stop.stdout.read().decode(errors="replace")
    f["list_after_kill"] = sc.xl("list")
    try:  # the xl it started: still saving (own session, output to a file), or dead with it
        wait(lambda: not xl_procs("save"), 180, "xl save to end")
        f["xl_save_outlived"] = "ended"
    except TimeoutError:
        f["xl_save_outlived"] = "still running after 180s"
    f["save_dir_after_kill"] = {p.name: p.stat().st_size for p in sorted(save.iterdir()) if p.is_file()}
    sc.snapshot("after_kill")
    f["start"] = sc.xd(conf, "start")
    sc.snapshot("after_start")
    try:
        f["heartbeat_after"] = wait_heartbeat_after("victim", last, timeout=60)
    except TimeoutError:
        f["heartbeat_after"] = None
    f["heartbeat_before"] = last
    f["boots_after"] = boots("victim")
    f["save_dir_after_start"] = sorted(os.listdir(save)) if save.exists() else []


FAKE_SSH = "#!/bin/sh\n# ssh HOST COMMAND...: run COMMAND here (xl migrate to localhost on one host)\nshift\nexec \"$@\"\n"


def scn_migrate(sc: Scenario) -> None:
    """XENDOMAINS_MIGRATE with `-s FAKE-SSH localhost`: real `xl migrate` to this very host."""
    f = sc.facts
    ssh = sc.dir / "fake-ssh"
    ssh.write_text(FAKE_SSH)
    ssh.chmod(0o755)
    sc.create("wanderer")
    sc.guest_names.update({"wanderer--incoming", "wanderer--migratedaway"})
    conf = sc.conf(XENDOMAINS_SAVE="", XENDOMAINS_MIGRATE=f"-s {ssh} localhost", XENDOMAINS_STOP_MAXWAIT="180")
    sc.snapshot("before")
    f["boots_before"] = boots("wanderer")
    last = max(heartbeats("wanderer"))
    f["heartbeat_before"] = last
    with ProcSampler() as ps:
        f["stop"] = sc.xd(conf, "stop")
    f["xl_seen"] = ps.facts()
    sc.snapshot("after_stop")
    try:
        f["heartbeat_after"] = wait_heartbeat_after("wanderer", last, timeout=30)
    except TimeoutError:
        f["heartbeat_after"] = None
    f["boots_after"] = boots("wanderer")
    f["console_files"] = sorted(os.listdir(CONSOLE_DIR))
    f["migrate_stderr"] = "".join(json.loads(line).get("stderr", "") for line in
                                  (sc.dir / "run/progress.jsonl").read_text().splitlines()
                                  if '"migrate"' in line and '"command_finished"' in line)


SCENARIOS = {"xlsave": scn_xlsave, "start": scn_start, "stop": scn_stop, "sysrq": scn_sysrq,
             "watchdog": scn_watchdog, "badsave": scn_badsave, "parallel": scn_parallel, "migrate": scn_migrate,
             "killsave": scn_killsave}
#: scenarios that hand their guests to the next one
CHAINED = {"start", "stop"}


def main(out: Path) -> int:
    req = json.loads((out / "request.json").read_text())
    OPTIONS.update(req.get("options", {}))
    WORK.mkdir(parents=True, exist_ok=True)
    print(f"runner: python {sys.version.split()[0]} uptime {uptime():.1f}; scenarios {req['scenarios']}", flush=True)
    for name in req["scenarios"]:
        sc = Scenario(name, out / name)
        t0 = uptime()
        error = None
        try:
            fn = SCENARIOS[name]
            fn(sc)
        except Exception:
            error = traceback.format_exc()
            print(f"[{name}] ERROR {error}", flush=True)
        sc.finish(error, t0)
        print(f"[{name}] done in {uptime() - t0:.1f}s", flush=True)
        if name not in CHAINED or error:
            destroy_all()
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
