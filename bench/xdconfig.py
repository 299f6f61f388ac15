"""The one config file both the classic script (sources it with bash) and ours (parses it) read.

Plain `KEY=value` lines only, so that both read the same settings; the
classic script ignores our extra keys (lock file, progress file, parallel).
"""

from __future__ import annotations

from pathlib import Path


def write_config(path: Path, *, auto_dir: Path, save_dir: Path | None, run_dir: Path, parallel: int = 1,
                 shutdown: str = "--wait", shutdown_all: str = "--all --wait", stop_maxwait: int = 300,
                 auto_only: bool = False, restore: bool = True) -> Path:
    lines = [
        f'XENDOMAINS_SAVE="{save_dir or ""}"',
        'XENDOMAINS_MIGRATE=""',
        'XENDOMAINS_SYSRQ=""',
        f'XENDOMAINS_AUTO="{auto_dir}"',
        f"XENDOMAINS_AUTO_ONLY={'true' if auto_only else 'false'}",
        f"XENDOMAINS_RESTORE={'true' if restore else 'false'}",
        "XENDOMAINS_CREATE_USLEEP=0",
        "XENDOMAINS_USLEEP=0",
        f"XENDOMAINS_STOP_MAXWAIT={stop_maxwait}",
        f'XENDOMAINS_SHUTDOWN="{shutdown}"',
        f'XENDOMAINS_SHUTDOWN_ALL="{shutdown_all}"',
        # ours only (the classic script's lock is XEN_LOCK_DIR/xendomains)
        f'XENDOMAINS_LOCKFILE="{run_dir / "ours.lock"}"',
        f'XENDOMAINS_PROGRESS="{run_dir / "progress.jsonl"}"',
        f"XENDOMAINS_PARALLEL={parallel}",
    ]
    run_dir.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path
