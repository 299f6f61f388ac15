"""A stand-in for `systemctl show` / `systemctl is-active`, for the units the stand-in `systemd-run` started.

    python fake_systemctl.py [OPTIONS...] show|is-active UNIT...     (installed on PATH as `systemctl`)

It reads its command line the way systemd 252's systemctl does (src/systemctl/systemctl.c:
getopt_long without "+", so options may come before or after the verb; `-p`/`--property=`
takes a comma-separated list and may be given again; `-P NAME` is `--value --property=NAME`;
a unit name without a suffix gets ".service"; an unknown option or verb is an error: message
on stderr, exit 1), and answers from what tests/tui/fake_systemd_run.py recorded in
$FAKE_SYSTEMD_DIR:

- command still running (no `units/NAME.service.json.result` yet): LoadState=loaded,
  ActiveState=active, SubState=running, ExecMainPID=its pid, Result=success;
- command ended, unit started with `--collect`: gone, as systemd garbage-collects it at once —
  LoadState=not-found, ActiveState=inactive, SubState=dead, ExecMainPID=0;
- command ended, no `--collect`: exit 0 -> inactive/dead, Result=success; else
  failed/failed, Result=exit-code (signal when killed), ExecMainPID the pid it had;
- a unit never started: not-found, inactive, dead, as systemd says of an unknown unit.

`show` prints `NAME=VALUE` lines (with `--value` only the values) in systemd's order for these
properties (the Unit interface's, then the Service interface's) whatever order -p gave them in,
units separated by an empty line; exit 0, also for an unknown unit.  `is-active` prints each
unit's ActiveState (nothing with --quiet) and exits 0 when one of them is active, else 3.
"""

from __future__ import annotations

import json
import os
import sys

try:
    from .fake_systemd_run import Refused, getopt, state_dir
except ImportError:  # run as a script
    from fake_systemd_run import Refused, getopt, state_dir

#: the properties this stand-in knows, in the order systemctl 252 prints them
ORDER = ("Id", "LoadState", "ActiveState", "SubState", "Result", "MainPID", "ExecMainPID", "ExecMainStatus")

#: systemctl's long options that this stand-in accepts: name -> takes an argument
LONG = {"property": True, "value": False, "quiet": False, "all": False, "no-pager": False, "system": False,
        "no-legend": False, "full": False, "-P": True}  # -P only (no such long option)
SHORT = {"p": "property", "q": "quiet", "a": "all", "l": "full", "P": "-P"}
VERBS = ("show", "is-active")
RUNNING = {"active", "reloading", "activating", "deactivating", "refreshing"}


def parse(args: list[str]) -> tuple[dict[str, list[str]], list[str]]:
    """(options: long name -> values, the other words) as systemctl's getopt_long (permuting) reads them."""
    opts, words = getopt("systemctl", args, LONG, SHORT, permute=True)
    if "-P" in opts:  # -P NAME: --value --property=NAME
        opts.setdefault("property", []).extend(opts.pop("-P"))
        opts.setdefault("value", []).append("")
    return opts, words


def unit_properties(state: str, unit: str) -> dict[str, str]:
    record = os.path.join(state, "units", unit + ".json")
    props = {"Id": unit, "LoadState": "not-found", "ActiveState": "inactive", "SubState": "dead",
             "Result": "success", "MainPID": "0", "ExecMainPID": "0", "ExecMainStatus": "0"}
    try:
        with open(record) as fh:
            rec = json.load(fh)
    except FileNotFoundError:
        return props
    try:
        with open(record + ".result") as fh:
            result = json.load(fh)
    except FileNotFoundError:
        return dict(props, LoadState="loaded", ActiveState="active", SubState="running",
                    MainPID=str(rec["pid"]), ExecMainPID=str(rec["pid"]))
    if rec.get("collect"):
        return props  # garbage-collected as soon as it ended (CollectMode=inactive-or-failed)
    code = result["code"]
    props.update(LoadState="loaded", ExecMainPID=str(result["pid"]), ExecMainStatus=str(abs(code)))
    if code != 0:
        props.update(ActiveState="failed", SubState="failed", Result="exit-code" if code > 0 else "signal")
    return props


def main(args: list[str]) -> int:
    state = state_dir("systemctl")
    if not state:
        return 1
    try:
        opts, words = parse(args)
        if not words:
            raise Refused("fake systemctl: list-units is not simulated")
        verb, units = words[0], words[1:]
        if verb not in VERBS:
            raise Refused(f"Unknown command verb '{verb}'.")
        if not units:
            raise Refused("fake systemctl: 'show' of the manager is not simulated" if verb == "show"
                          else "Too few arguments.")
    except Refused as exc:
        sys.stderr.write(f"{exc}\n")
        return 1
    units = [u if "." in u.rsplit("@", 1)[-1] else u + ".service" for u in units]
    states = [unit_properties(state, u) for u in units]
    if verb == "is-active":
        if "quiet" not in opts:
            sys.stdout.write("".join(f"{p['ActiveState']}\n" for p in states))
        return 0 if any(p["ActiveState"] in RUNNING for p in states) else 3
    wanted = {n for v in opts.get("property", []) for n in v.split(",") if n}
    blocks = []
    for p in states:
        shown = [n for n in ORDER if not wanted or n in wanted]
        blocks.append("".join((f"{p[n]}\n" if "value" in opts else f"{n}={p[n]}\n") for n in shown))
    sys.stdout.write("\n".join(blocks))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
