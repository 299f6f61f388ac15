"""Render the README's screenshots: the console photographing itself on the simulated demo host.

    python scripts/screenshots.py [--out screenshots]

Each picture is the real app (the same `make_app` factory as `xdtui`), run
headless at 100×32 against a fresh demo host (`xdsim demo`, demo latencies),
driven by key presses like an operator would, then `save_screenshot()`.
The attach picture follows a real headless `xendomains stop` started as a
subprocess.  Host name and dom0 figures are frozen so pictures only change
when the console does.
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

SIZE = (100, 32)
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
    with simhost.transaction(host.demo_dir) as st:  # a failing migration shows the fall-through to save
        st.faults.append(simhost.Fault("migrate", "web02", "fail"))
    return host


async def host_and_plan_and_run(out: Path, base: Path) -> None:
    host = fresh_demo(base, "run")
    app = make_app(host, PROVIDERS)
    async with app.run_test(size=SIZE) as pilot:
        await filled(pilot, app)
        app.save_screenshot("host-view.svg", str(out))
        app.set_migrate_target(("--live", "host2"))
        app.set_parallel(2)
        await pilot.press("e")
        from xdtui.screens.plan_dialog import PlanDialog

        await until(pilot, lambda: isinstance(app.screen, PlanDialog))
        await pilot.pause(0.3)
        app.save_screenshot("plan-confirmation.svg", str(out))
        await pilot.press("y")
        await until(pilot, lambda: app.host_screen.board_state.progress()[0] >= 4)
        await pilot.pause(0.5)
        app.save_screenshot("evacuation.svg", str(out))
        app.abort_runs(now=True)
        await until(pilot, lambda: not app.run_active)


async def palette(out: Path, base: Path) -> None:
    app = make_app(fresh_demo(base, "palette"), PROVIDERS)
    async with app.run_test(size=SIZE) as pilot:
        await filled(pilot, app)
        await pilot.press("ctrl+p")
        await pilot.pause(0.3)
        await pilot.press(*"selected")
        await pilot.pause(0.8)
        app.save_screenshot("command-palette.svg", str(out))


async def attach(out: Path, base: Path) -> None:
    host = fresh_demo(base, "attach")
    env = dict(os.environ, PATH=f"{host.demo_dir / 'bin'}{os.pathsep}{os.environ['PATH']}",
               XDSIM_STATE=str(host.demo_dir), PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "xdcore.cli", "--config", str(host.cfg.path), "--parallel", "2", "stop"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not headless_run_in_progress(host.cfg.progress):
            if time.monotonic() > deadline:
                raise SystemExit("screenshot script: the headless run did not start")
            await asyncio.sleep(0.1)
        app = make_app(host, PROVIDERS)  # attaches on its own: a headless run is in progress
        async with app.run_test(size=SIZE) as pilot:
            from xdtui.screens.attach import AttachScreen

            await until(pilot, lambda: isinstance(app.screen, AttachScreen) and app.screen.board_state.progress()[0] >= 3)
            await pilot.pause(0.5)
            app.save_screenshot("attach.svg", str(out))
    finally:
        proc.terminate()
        proc.wait()


async def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="xdtui-shots-") as tmp:
        base = Path(tmp)
        await host_and_plan_and_run(out, base)
        await palette(out, base)
        await attach(out, base)
    for p in sorted(out.glob("*.svg")):
        print(p)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "screenshots"))
    asyncio.run(main(Path(ap.parse_args().out)))
