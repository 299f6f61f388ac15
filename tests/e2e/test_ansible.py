"""The Ansible collection (ansible/): the rolling-maintenance playbook drains four simulated hosts in turn.

ansible-core runs the real playbook with a local connection; each inventory
host is a simulated Xen host with its own state directory, shims, config and
save/auto directories, all four in one simulated pool so that they migrate
onto each other by name.  The module runs the installed `xendomains`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from xdcore.sim import host as simhost
from xdcore.sim import pool as simpool
from xdcore.sim.testing import add_domain, config_of, guest_config_text, make_host

from .helpers import image_is_complete, xendomains_exe

REPO = Path(__file__).resolve().parents[2]
HOSTS = ("xen01", "xen02", "xen03", "xen04")
MEMORY = 16384

pytestmark = pytest.mark.slow


def ansible_playbook() -> str:
    here = Path(sys.executable).parent / "ansible-playbook"
    found = str(here) if here.exists() else shutil.which("ansible-playbook")
    if not found:
        pytest.fail("ansible-playbook is not installed (pip install -e '.[test]' installs ansible-core)")
    return found


def conf(d: Path) -> str:
    return "".join(f"{k}={v}\n" for k, v in {
        "XENDOMAINS_SAVE": d / "save", "XENDOMAINS_AUTO": d / "auto", "XENDOMAINS_LOCKFILE": d / "lock" / "xendomains",
        "XENDOMAINS_PROGRESS": d / "run" / "progress.jsonl", "XENDOMAINS_STOP_MAXWAIT": 20, "XENDOMAINS_USLEEP": 0,
        "XENDOMAINS_CREATE_USLEEP": 0, "XENDOMAINS_SHUTDOWN": "--wait", "XENDOMAINS_SHUTDOWN_ALL": "'--all --wait'",
        "XENDOMAINS_TOOLSTACK": "xl", "XENDOMAINS_TARGET_RESERVE_MIB": 1024}.items())


def put_guest(d: Path, name: str, mib: int, auto: bool) -> None:
    cfg = d / "configs" / f"{name}.cfg"
    cfg.write_text(guest_config_text(name, mib, 1))
    add_domain(d, config_of(cfg), config_path=str(cfg))
    if auto:
        (d / "auto" / f"{name}.cfg").symlink_to(cfg)


def where_is(dirs: dict[str, Path]) -> dict[str, list[str]]:
    """guest -> hosts running it, plus 'saved:HOST' for each complete image in a save directory."""
    out: dict[str, list[str]] = {}
    for name, d in dirs.items():
        for dom in simhost.load_snapshot(d).domains:
            if dom.domid:
                out.setdefault(dom.name, []).append(name)
        for p in (d / "save").iterdir():
            if p.is_file() and image_is_complete(p):
                out.setdefault(p.name, []).append(f"saved:{name}")
    return out


def ansible_env(tmp_path: Path) -> dict[str, str]:
    collections = tmp_path / "collections" / "ansible_collections" / "xendomains"
    collections.mkdir(parents=True)
    (collections / "xen").symlink_to(REPO / "ansible")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XENDOMAINS_", "ANSIBLE_"))}
    env.update(ANSIBLE_COLLECTIONS_PATH=str(tmp_path / "collections"), ANSIBLE_LOCAL_TEMP=str(tmp_path / "a-local"),
               ANSIBLE_REMOTE_TEMP=str(tmp_path / "a-remote"), ANSIBLE_NOCOLOR="1", ANSIBLE_RETRY_FILES_ENABLED="0",
               ANSIBLE_STDOUT_CALLBACK="default", HOME=str(tmp_path))
    return env


def run_module(tmp_path: Path, env: dict[str, str], layout, args: str, *extra: str) -> dict:
    """`ansible localhost -m xendomains.xen.xendomains -a ARGS` on a simulated host; the module's result."""
    (layout.state_dir / "xendomains.conf").write_text(conf(layout.state_dir))
    for sub in ("lock", "run"):
        (layout.state_dir / sub).mkdir(exist_ok=True)
    menv = {**env, "PATH": f"{layout.bin_dir}{os.pathsep}{env.get('PATH', '')}", "XDSIM_STATE": str(layout.state_dir),
            "XENDOMAINS_SYSLOG": "no"}
    argv = [str(Path(ansible_playbook()).with_name("ansible")), "localhost", "-c", "local", "-o",
            "-e", f"ansible_python_interpreter={sys.executable}", "-m", "xendomains.xen.xendomains",
            "-a", f"{args} config={layout.state_dir / 'xendomains.conf'} executable={xendomains_exe()}", *extra]
    done = subprocess.run(argv, capture_output=True, text=True, env=menv, timeout=300, cwd=tmp_path)
    line = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    assert " => " in line, done.stdout + done.stderr
    return json.loads(line.split(" => ", 1)[1])


def test_the_module_in_check_mode_returns_the_plan_and_changes_nothing(tmp_path):
    env = ansible_env(tmp_path)
    layout = make_host(tmp_path / "xen01", [("web01", 1024, 1), ("db", 2048, 1)], fast=True)
    out = run_module(tmp_path, env, layout, "state=evacuated", "--check")
    assert out["changed"] is True and {g["guest"] for g in out["plan"]["guests"]} == {"web01", "db"}
    assert "report" not in out
    assert {d.name for d in simhost.load_snapshot(layout.state_dir).domains} == {"Domain-0", "web01", "db"}
    out = run_module(tmp_path, env, layout, "state=evacuated")
    assert out["changed"] is True and sorted(out["moved"]["saved"]) == ["db", "web01"]
    assert {g["guest"]: g["outcome"] for g in out["report"]["guests"]} == {"web01": "saved", "db": "saved"}
    again = run_module(tmp_path, env, layout, "state=evacuated")
    assert again["changed"] is False  # nothing left to move
    started = run_module(tmp_path, env, layout, "state=started")
    assert started["changed"] is True and sorted(started["moved"]["restored"]) == ["db", "web01"]
    status = run_module(tmp_path, env, layout, "state=status")
    assert status["changed"] is False and {g["name"] for g in status["status"]["running"]} == {"web01", "db"}


def test_the_rolling_playbook_drains_each_host_in_turn_and_loses_or_doubles_no_guest(tmp_path):
    first = make_host(tmp_path / "xen01", fast=True)
    simpool.rename_self(first.state_dir, "xen01")
    dirs = {"xen01": first.state_dir}
    for name in HOSTS[1:]:  # xen04 is bigger: it holds a guest too big for any other host
        dirs[name] = Path(simpool.add_member(first.state_dir, name, MEMORY if name != "xen04" else MEMORY + 8192))
    with simhost.transaction(first.state_dir) as st:
        st.total_memory_mib = MEMORY
    guests: dict[str, str] = {}
    for i, (name, d) in enumerate(dirs.items(), 1):
        put_guest(d, f"app{i}", 2048, auto=True)  # autostarted at boot: must not be created twice
        put_guest(d, f"web{i}", 1024, auto=False)
        guests.update({f"app{i}": name, f"web{i}": name})
    put_guest(dirs["xen04"], "huge", 14336, auto=False)  # fits on no peer: saved, restored at xen04's start
    guests["huge"] = "xen04"
    for name, d in dirs.items():
        (d / "xendomains.conf").write_text(conf(d))
        (d / "lock").mkdir(exist_ok=True)
        (d / "run").mkdir(exist_ok=True)

    env = ansible_env(tmp_path)
    hook = tmp_path / "maintenance.yml"
    hook.write_text(
        "- name: What runs on the host while it is empty\n"
        "  ansible.builtin.command: xl list\n"
        "  register: xl_list\n"
        "  changed_when: false\n"
        "- name: Keep it for the test\n"
        "  ansible.builtin.copy:\n"
        f"    dest: \"{tmp_path}/drained-{{{{ inventory_hostname }}}}.txt\"\n"
        "    content: \"{{ xl_list.stdout }}\"\n"
        "  delegate_to: localhost\n")
    inventory = {"xen": {"hosts": {name: {
        "ansible_connection": "local",
        "ansible_python_interpreter": sys.executable,
        "xendomains_config": str(d / "xendomains.conf"),
        "xendomains_executable": xendomains_exe(),
        "xendomains_parallel": 2,
        "xendomains_maintenance_tasks": str(hook),
        "xendomains_environment": {"PATH": f"{d / 'bin'}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
                                   "XDSIM_STATE": str(d), "XENDOMAINS_SYSLOG": "no"},
    } for name, d in dirs.items()}}}
    (tmp_path / "inventory.json").write_text(json.dumps(inventory))
    done = subprocess.run([ansible_playbook(), "-i", str(tmp_path / "inventory.json"),
                           "xendomains.xen.rolling_maintenance"], capture_output=True, text=True, env=env,
                          timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    # each host was empty (Domain-0 alone) when its maintenance ran
    for name in HOSTS:
        listing = (tmp_path / f"drained-{name}.txt").read_text().splitlines()
        assert [ln.split()[0] for ln in listing[1:]] == ["Domain-0"], (name, listing)
    # no guest lost or doubled: each runs on exactly one host (no image is left: huge was restored)
    where = where_is(dirs)
    assert {g: len(w) for g, w in where.items()} == {g: 1 for g in guests}, where
    assert where["huge"] == ["xen04"]
    # refilled: the hosts drained early took guests from the hosts drained after them
    for name in HOSTS[:-1]:
        received = {g for g, w in where.items() if w == [name] and guests[g] != name}
        assert received, f"{name} was not refilled: {where}"
    last_stop = json.loads((dirs["xen04"] / "run" / "last-stop.json").read_text())
    assert {g["guest"]: g["outcome"] for g in last_stop["guests"]}["huge"] == "saved"
    # the last host's auto guest went to a peer and was not created again at its start
    assert where["app4"] != ["xen04"]
    assert "changed=" in done.stdout and "failed=0" in done.stdout


def test_the_module_places_the_guests_the_admin_names_and_the_rest_by_room(tmp_path):
    env = ansible_env(tmp_path)
    layout = make_host(tmp_path / "xen01", [("web01", 1024, 1), ("db", 2048, 1)], fast=True)
    simpool.rename_self(layout.state_dir, "xen01")
    peers = {name: Path(simpool.add_member(layout.state_dir, name, mib)) for name, mib in (("xen02", 16384),
                                                                                           ("xen03", 8192))}
    args = "state=evacuated targets=xen02,xen03 place=db=xen03"
    planned = run_module(tmp_path, env, layout, args, "--check")
    assert planned["placement"] == {"db": "xen03", "web01": "xen02"}  # db by the admin, web01 by room
    assert {g["guest"]: g["placed_by"] for g in planned["plan"]["guests"]} == {"db": "operator", "web01": "placement"}
    out = run_module(tmp_path, env, layout, args)
    assert out["changed"] is True and out["placement"] == {"db": "xen03", "web01": "xen02"}
    assert {g["guest"]: g["placed_by"] for g in out["report"]["guests"]} == {"db": "operator", "web01": "placement"}
    assert {d.name for d in simhost.load_snapshot(peers["xen03"]).domains if d.domid} == {"db"}
