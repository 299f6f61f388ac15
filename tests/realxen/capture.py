"""Copy the real outputs a realxen run met into tests/fixtures/xen/real-4.17/ (the simulator's tests compare with them).

    python -m tests.realxen.capture [RUN_DIR]     # default: the cache's runs/latest

Each capture is NAME.stdout / NAME.stderr / NAME.rc, as in the first capture of that directory (its README lists them).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tests.realxen.harness import CACHE

DEST = Path(__file__).resolve().parents[1] / "fixtures" / "xen" / "real-4.17"

#: fixture name -> (scenario, fact)
STEPS = {
    "xl_list_suspended": ("xlsave", "b_list_after"),
    "xl_shutdown_suspended": ("xlsave", "b_shutdown_suspended"),
    "xl_save_suspended": ("xlsave", "b_save_suspended"),
    "xl_restore_truncated": ("xlsave", "b_restore_truncated"),
    "xl_restore_name_taken": ("xlsave", "b_restore_partial"),
    "xl_save_enospc": ("badsave", "xl_save_enospc"),
    "xl_list_zombie": ("parallel", "zombie_list"),
    "xl_listl_zombie": ("parallel", "xl_list_l_with_zombie"),
}


def export(run: Path) -> list[str]:
    written = []
    results = {p.parent.name: json.loads(p.read_text()) for p in run.glob("*/result.json")}
    for name, (scenario, fact) in STEPS.items():
        step = results.get(scenario, {}).get("facts", {}).get(fact)
        if not isinstance(step, dict) or "rc" not in step:
            continue
        (DEST / f"{name}.stdout").write_text(step["stdout"])
        (DEST / f"{name}.stderr").write_text(step["stderr"])
        (DEST / f"{name}.rc").write_text(f"{step['rc']}\n")
        written.append(name)
    xs = results.get("xlsave", {}).get("facts", {})
    if "a_stderr" in xs:
        (DEST / "xl_save_file_parent_killed.stderr").write_text(xs["a_stderr"])
        written.append("xl_save_file_parent_killed")
    return written


if __name__ == "__main__":
    run = Path(sys.argv[1]) if len(sys.argv) > 1 else (CACHE / "runs" / "latest").resolve()
    print("\n".join(export(run)))
