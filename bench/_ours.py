"""Run `xendomains` exactly as its console script does, then note this process's own CPU time.

    XDBENCH_RUSAGE=FILE python bench/_ours.py [xendomains arguments…]

Why a wrapper: the CPU time of our orchestration is the `xendomains` process
itself — interpreter start-up, imports, config parsing, the asyncio
pipeline, output parsing — and not the `xl` children it spawns.
`getrusage(RUSAGE_SELF)` taken after `main()` returns gives exactly that
(all threads, no children), which `RUSAGE_CHILDREN` or `wait4` in the parent
cannot: they fold in every waited-for `xl` descendant.  The children's
CPU (the simulated `xl` processes) is noted too, as the simulator's cost.  The console script
is `from xdcore.cli import main; sys.exit(main())`, so this is the same run
plus one getrusage call.
"""

from __future__ import annotations

import os
import resource
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from xdcore.cli import main  # noqa: E402


def _record() -> None:
    path = os.environ.get("XDBENCH_RUSAGE")
    if not path:
        return
    ru = resource.getrusage(resource.RUSAGE_SELF)
    ch = resource.getrusage(resource.RUSAGE_CHILDREN)  # the xl processes we waited for (the simulator's cost)
    with open(path, "w") as f:
        f.write(f"{ru.ru_utime!r} {ru.ru_stime!r} {ch.ru_utime!r} {ch.ru_stime!r}\n")


if __name__ == "__main__":
    try:
        rc = main(sys.argv[1:])
    finally:
        _record()
    sys.exit(rc)
