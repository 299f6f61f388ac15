"""`xdtui`: the console.

    xdtui [--config FILE] [--attach] [--no-mouse]
    xdtui --demo [--state DIR] [--fast] [--no-mouse]

On this host the toolstack is detected (xl, else xm) and the config read from
the usual places; `--demo` lays out a simulated host (no root needed) and
starts runs on it as headless `xendomains` processes, like on a real host.  With a headless `xendomains` run in progress the
console attaches to it on its own; `--attach` does so explicitly.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from xdcore.config import load_config
from xdcore.errors import ConfigMissing, ToolstackMissing

from .app import make_app
from .host import HostContext


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="xdtui", description="The xendomains console: live domains, runs, stage board.")
    p.add_argument("--config", metavar="FILE", help="xendomains config file (default: the usual places)")
    p.add_argument("--attach", action="store_true", help="follow the headless run in progress (steer it where its control socket permits, read-only otherwise)")
    p.add_argument("--demo", action="store_true", help="a simulated demo host (no root, no Xen needed)")
    p.add_argument("--state", metavar="DIR", help="with --demo: the simulator's state directory (default: a temporary one)")
    p.add_argument("--fast", action="store_true", help="with --demo: tiny latencies (an evacuation takes seconds)")
    p.add_argument("--no-mouse", action="store_true", help="do not capture the mouse")
    return p


def host_context(ns: argparse.Namespace) -> HostContext:
    if ns.demo:
        from .demo import demo_host

        state = Path(ns.state) if ns.state else Path(tempfile.mkdtemp(prefix="xdtui-demo-"))
        if not ns.state:
            ns.temporary_state = state  # ours to remove on the way out
        return demo_host(state, fast=ns.fast)
    from xdcore.toolstack.detect import choose_toolstack

    cfg = load_config(ns.config)
    return HostContext(cfg, choose_toolstack(cfg.toolstack))


def main(argv: Sequence[str] | None = None) -> int:
    ns = _parser().parse_args(argv)
    try:
        return _main(ns)
    finally:
        temporary = getattr(ns, "temporary_state", None)
        if temporary is not None:  # `--demo` without `--state`: a throwaway host, nothing to keep
            from .follow import headless_run_in_progress

            if headless_run_in_progress(temporary / "run" / "progress.jsonl"):  # unless a run on it goes on
                sys.stderr.write(f"xdtui: the demo host {temporary} is kept: a run on it goes on "
                                 f"(xdtui --demo --state {temporary} attaches to it)\n")
            else:
                shutil.rmtree(temporary, ignore_errors=True)


def _main(ns: argparse.Namespace) -> int:
    try:
        host = host_context(ns)
    except ConfigMissing as exc:
        sys.stderr.write(f"xdtui: {exc} (use --config FILE, or --demo to try the console)\n")
        return 6
    except ToolstackMissing as exc:
        sys.stderr.write(f"xdtui: {exc} (use --demo to try the console)\n")
        return 5
    for w in host.cfg.warnings:
        sys.stderr.write(f"xdtui: warning: {w}\n")
    app = make_app(host, attach="force" if ns.attach else "auto", handle_signals=True)
    code = app.run(mouse=not ns.no_mouse)
    if app.exit_reason in ("hangup", "terminated"):
        return 0
    return code or 0


if __name__ == "__main__":
    sys.exit(main())
