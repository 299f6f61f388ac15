"""Render the README's screenshots: the console photographing itself on the simulated demo host.

    python scripts/screenshots.py [--out screenshots]

Each picture is the real app (the same `make_app` factory as `xdtui`), run
headless at 80×24 (the classic terminal) and at 120×40 against a fresh demo
host (`xdsim demo`, demo latencies), driven by key presses like an operator
would, then `save_screenshot()`.  Runs are what they are on a real host:
headless `xendomains` processes the console launches and follows.  Host name
and dom0 figures are frozen so pictures only change when the console does.
Glyphs are ones common fonts have (≡ for the header, › in the palette), so the
SVGs render without tofu or shifted letters.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from xdcore.sim import host as simhost  # noqa: E402
from xdtui.app import XdApp, make_app  # noqa: E402
from xdtui.demo import demo_host  # noqa: E402
from xdtui.follow import headless_run_in_progress  # noqa: E402
from xdtui.providers import Dom0Figures, Providers  # noqa: E402

SIZES = ((80, 24), (120, 40))
PROVIDERS = Providers.frozen(hostname="xen-demo-01", dom0=Dom0Figures(6.2, 1_400_000_000, 2 * 2**30, (0.31, 0.27, 0.22)))
PROVIDERS = Providers(hostname=PROVIDERS.hostname, dom0=PROVIDERS.dom0)  # real clock: elapsed times tick


async def until(pilot, cond, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise SystemExit("screenshot script: timed out")
        await pilot.pause(0.1)


async def filled(pilot, app: XdApp) -> None:
    await until(pilot, lambda: app.host_screen and app.host_screen.domains_seen and app.host_screen.autos)
    await pilot.pause(0.5)


def fresh_demo(base: Path, name: str):
    host = demo_host(base / name)
    conf = host.cfg.path  # the runs read the file: a migration target and two at a time
    conf.write_text(conf.read_text().replace('XENDOMAINS_MIGRATE=""', 'XENDOMAINS_MIGRATE="--live host2"')
                    .replace("XENDOMAINS_PARALLEL=1", "XENDOMAINS_PARALLEL=2"))
    host = demo_host(base / name)
    with simhost.transaction(host.demo_dir) as st:  # a failing migration shows the fall-through to save
        st.faults.append(simhost.Fault("migrate", "web02", "fail"))
    return host


def shot(app: XdApp, name: str, size: tuple[int, int], out: Path) -> None:
    app.save_screenshot(f"{name}-{size[0]}x{size[1]}.svg", str(out))


async def host_and_plan_and_run(out: Path, base: Path, size: tuple[int, int]) -> None:
    from xdtui.screens.guest_detail import GuestDetail
    from xdtui.screens.help import HelpScreen
    from xdtui.screens.plan_dialog import PlanDialog

    host = fresh_demo(base, f"run{size[0]}")
    app = make_app(host, PROVIDERS)
    async with app.run_test(size=size) as pilot:
        await filled(pilot, app)
        shot(app, "host-view", size, out)
        await pilot.press("question_mark")
        await until(pilot, lambda: isinstance(app.screen, HelpScreen))
        await pilot.pause(0.3)
        shot(app, "help", size, out)
        await pilot.press("escape")
        await pilot.press("e")
        await until(pilot, lambda: isinstance(app.screen, PlanDialog))
        await pilot.pause(0.3)
        shot(app, "plan-confirmation", size, out)
        await pilot.press("y")
        await until(pilot, lambda: app.host_screen.board_state.progress()[0] >= 4)
        await until(pilot, lambda: app.host_screen.steering.allowed)
        await pilot.pause(0.5)
        shot(app, "evacuation", size, out)
        app.host_screen.open_detail("web02")
        await until(pilot, lambda: isinstance(app.screen, GuestDetail))
        await pilot.pause(0.3)
        shot(app, "guest-detail", size, out)
        await pilot.press("escape")
        await pilot.press("X")
        await pilot.pause(0.3)
        await pilot.press("y")
        await until(pilot, lambda: app.host_screen.board_state.finished is not None)


async def palette(out: Path, base: Path, size: tuple[int, int]) -> None:
    app = make_app(fresh_demo(base, f"palette{size[0]}"), PROVIDERS)
    async with app.run_test(size=size) as pilot:
        await filled(pilot, app)
        await pilot.press("ctrl+p")
        await pilot.pause(0.3)
        await pilot.press(*"selected")
        await pilot.pause(0.8)
        shot(app, "command-palette", size, out)


async def attach(out: Path, base: Path, size: tuple[int, int]) -> None:
    host = fresh_demo(base, f"attach{size[0]}")
    env = dict(os.environ, PATH=f"{host.demo_dir / 'bin'}{os.pathsep}{os.environ['PATH']}",
               XDSIM_STATE=str(host.demo_dir), PYTHONPATH=str(ROOT), XENDOMAINS_SYSLOG="no")
    proc = subprocess.Popen([sys.executable, "-m", "xdcore.cli", "--config", str(host.cfg.path), "stop"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not headless_run_in_progress(host.cfg.progress):
            if time.monotonic() > deadline:
                raise SystemExit("screenshot script: the headless run did not start")
            await asyncio.sleep(0.1)
        app = make_app(host, PROVIDERS)  # attaches on its own: a headless run is in progress
        async with app.run_test(size=size) as pilot:
            from xdtui.screens.attach import AttachScreen

            await until(pilot, lambda: isinstance(app.screen, AttachScreen) and app.screen.board_state.progress()[0] >= 3
                        and app.screen.steering.allowed)
            await pilot.pause(0.5)
            shot(app, "attach", size, out)
    finally:
        proc.terminate()
        proc.wait()
        from tests.e2e.helpers import kill_xl_children

        kill_xl_children(host.demo_dir / "bin")  # each xl has a session of its own: it outlives the run


async def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="xdtui-shots-") as tmp:
        base = Path(tmp)
        for size in SIZES:
            await host_and_plan_and_run(out, base, size)
            await palette(out, base, size)
            await attach(out, base, size)
    for p in sorted(out.glob("*.svg")):
        print(p)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "screenshots"))
    asyncio.run(main(Path(ap.parse_args().out)))
