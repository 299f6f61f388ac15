"""Our stop with the simulated xl run in-process: the orchestration without any process spawn.

    python bench/_inproc.py CONFIG STATE_DIR PARALLEL   → prints "wall cpu exit_code"

Why: on a small machine the simulated `xl` processes (a Python interpreter
each, ~50 ms of CPU to start) compete with each other for the cores; a real
xl is a C program.  This runs the very same `Service.stop` with
`SimToolstack` (the same command generators the `xl` shim runs, their waits
as asyncio.sleep), so the wall time left is our pipeline plus the
simulator's state file work, and the ratio to the ideal shows what the
orchestration itself achieves.  The CPU figure includes the simulator's
in-process work.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from xdcore.config import load_config  # noqa: E402
from xdcore.events import EventBus  # noqa: E402
from xdcore.pipeline.control import RunControl  # noqa: E402
from xdcore.service import Service  # noqa: E402
from xdcore.sim.inprocess import SimToolstack  # noqa: E402


async def stop(config: str, state: str, parallel: int) -> int:
    cfg = load_config(config).with_overrides(parallel=parallel)
    bus = EventBus(run="bench")
    svc = Service(cfg, SimToolstack(state), bus, control=RunControl(cfg.parallel, emit=bus.emit))
    return (await svc.stop()).exit_code


def main() -> int:
    config, state, parallel = sys.argv[1], sys.argv[2], int(sys.argv[3])
    c0, t0 = time.process_time(), time.perf_counter()
    rc = asyncio.run(stop(config, state, parallel))
    print(f"{time.perf_counter() - t0!r} {time.process_time() - c0!r} {rc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
