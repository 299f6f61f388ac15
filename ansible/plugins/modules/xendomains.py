#!/usr/bin/python
# GNU General Public License v2.0+ (see https://www.gnu.org/licenses/old-licenses/gpl-2.0.txt)
"""Ansible module: drive the installed `xendomains` on a Xen host (plan, evacuate, start, status).

It never re-implements xendomains: every state runs the `xendomains` command
the host has, with `--json`, and returns what it printed (the plan, the run's
report, the status).  Check mode runs the plan instead of the verb.
"""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: xendomains
short_description: Plan, evacuate, start or check the Xen guests of a host with xendomains
version_added: "0.1.0"
description:
  - Runs the installed C(xendomains) command on the host; it never acts on guests itself.
  - C(evacuated) is C(xendomains stop) (migrate onto the targets by room, save, shut down);
    C(started) is C(xendomains start) (restore, then autostart); C(planned) is C(xendomains plan stop);
    C(status) is C(xendomains status).
  - In check mode C(evacuated) and C(started) return the plan of that verb and change nothing.
options:
  state:
    description: What to do.
    type: str
    required: true
    choices: [planned, evacuated, started, status]
  targets:
    description:
      - Migration targets the guests are placed on by room (C(--targets), i.e. XENDOMAINS_MIGRATE_TARGETS).
      - Options such as C(-s "ssh -p 2222") still come from XENDOMAINS_MIGRATE in the config file.
    type: list
    elements: str
  deadline:
    description: Budget in seconds for the whole evacuation (C(--deadline), i.e. XENDOMAINS_STOP_DEADLINE).
    type: float
  parallel:
    description: Guests handled at once (C(--parallel), i.e. XENDOMAINS_PARALLEL).
    type: int
  guests:
    description: Evacuate only these guests (C(xendomains stop GUEST...)); the service stays started.
    type: list
    elements: str
  place:
    description:
      - With several targets, the target chosen for some guests (guest -> target, C(--place GUEST=TARGET)),
        placed before the rest; the others are placed by room around them.
      - A placement that cannot be honoured (no such guest or target, target left out, no room) fails the task
        and nothing is stopped.
    type: dict
  config:
    description: The xendomains config file (default, the command's own search order).
    type: path
  executable:
    description: The xendomains command.
    type: path
    default: xendomains
author:
  - xendomains developers
"""

EXAMPLES = r"""
- name: Evacuate this host onto its peers
  xendomains.xen.xendomains:
    state: evacuated
    targets: "{{ groups['xen'] | difference([inventory_hostname]) }}"
    deadline: 600
    parallel: 4
    place:
      db01: xen03  # the rest by room
  register: evacuation

- name: Start the guests again after maintenance
  xendomains.xen.xendomains:
    state: started
"""

RETURN = r"""
rc:
  description: Exit code of xendomains (LSB).
  returned: always
  type: int
report:
  description: The run's report (C(xendomains --json report stop|start)) for evacuated and started.
  returned: when state is evacuated or started and not in check mode
  type: dict
plan:
  description: The plan (C(xendomains --json plan stop|start)) for planned, and for check mode.
  returned: when state is planned, or in check mode
  type: dict
status:
  description: C(xendomains --json status) for status (and after a start or an evacuation).
  returned: when state is status, evacuated or started
  type: dict
moved:
  description: The guests the run moved, by outcome (migrated, saved, shutdown, restored, created, destroyed).
  returned: when state is evacuated or started
  type: dict
placement:
  description: Guest -> target of the plan or of the run (guests that migrated), with several targets.
  returned: when targets were used
  type: dict
"""

import json
import shlex

from ansible.module_utils.basic import AnsibleModule

#: outcomes that mean a guest moved (its run changed the host)
MOVED = ("migrated", "saved", "shutdown", "destroyed", "restored", "created")
#: LSB exit codes of `xendomains status` that are answers, not failures
STATUS_ANSWERS = (0, 1, 3)


def _json_line(text):
    """The last line of `text` that is a JSON object (xendomains prints exactly one for plan/report/status)."""
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                continue
    return None


def _argv(p):
    argv = [p["executable"]]
    if p.get("config"):
        argv += ["--config", p["config"]]
    argv.append("--json")
    if p.get("parallel") is not None:
        argv.append(f"--parallel={p['parallel']}")
    if p.get("targets") is not None:
        argv.append("--targets=" + " ".join(p["targets"]))
    if p.get("deadline") is not None:
        argv.append(f"--deadline={p['deadline']:g}")
    return argv


def _run(module, argv):
    rc, out, err = module.run_command(argv, check_rc=False)
    return rc, out, err


def main():
    module = AnsibleModule(
        argument_spec=dict(
            state=dict(type="str", required=True, choices=["planned", "evacuated", "started", "status"]),
            targets=dict(type="list", elements="str"),
            deadline=dict(type="float"),
            parallel=dict(type="int"),
            guests=dict(type="list", elements="str"),
            place=dict(type="dict"),
            config=dict(type="path"),
            executable=dict(type="path", default="xendomains"),
        ),
        supports_check_mode=True,
    )
    p = module.params
    base = _argv(p)
    state = p["state"]
    result = {"changed": False, "rc": 0}

    def fail(msg, rc, out, err, **extra):
        module.fail_json(msg=msg, rc=rc, stdout=out[-4000:], stderr=err[-4000:], cmd=" ".join(map(shlex.quote, base)),
                         **extra)

    if state == "status":
        rc, out, err = _run(module, base + ["status"])
        status = _json_line(out)
        if status is None or rc not in STATUS_ANSWERS:
            fail(f"xendomains status exited {rc}", rc, out, err)
        module.exit_json(changed=False, rc=rc, status=status)

    verb = {"planned": "stop", "evacuated": "stop", "started": "start"}[state]
    # --place is an option of stop and plan stop only (report and status refuse it)
    place = [f"--place={g}={t}" for g, t in (p.get("place") or {}).items()] if verb == "stop" else []
    if state == "planned" or module.check_mode:
        argv = base + place + ["plan", verb] + (list(p["guests"] or []) if verb == "stop" else [])
        rc, out, err = _run(module, argv)
        plan = _json_line(out)
        if rc != 0 or plan is None:
            fail(f"xendomains plan {verb} exited {rc}", rc, out, err)
        acts = [g for g in plan.get("guests", []) if g.get("stages") and g.get("stages") != ["zombie"]]
        result.update(rc=rc, plan=plan, changed=bool(acts) if state != "planned" else False)
        placement = {g["guest"]: g.get("target", "") for g in plan.get("guests", []) if plan.get("targets")}
        if placement:
            result["placement"] = placement
        module.exit_json(**result)

    argv = base + place + [verb] + (list(p["guests"] or []) if verb == "stop" else [])
    rc, out, err = _run(module, argv)
    rrc, rout, rerr = _run(module, base + ["report", verb])
    report = _json_line(rout) if rrc == 0 else None
    moved = {}
    placement = {}
    for g in (report or {}).get("guests", []):
        if g.get("outcome") in MOVED:
            moved.setdefault(g["outcome"], []).append(g["guest"])
        if g.get("target"):
            placement[g["guest"]] = g["target"]
    src, sout, serr = _run(module, base + ["status"])
    result.update(rc=rc, report=report, moved=moved, changed=bool(moved), status=_json_line(sout))
    if placement:
        result["placement"] = placement
    if rc != 0:
        fail(f"xendomains {verb} exited {rc}: {(report or {}).get('summary', '')}", rc, out, err,
             **{k: v for k, v in result.items() if k not in ("rc",)})
    module.exit_json(**result)


if __name__ == "__main__":
    main()
