"""Many xl processes at once keep the host consistent (flock + atomic replace)."""

from __future__ import annotations

import json
import subprocess

from xdcore.sim import host
from xdcore.sim.testing import guest_config_text


def test_twenty_concurrent_creates_give_twenty_guests_with_unique_domids(sim_env, sim_state, tmp_path):
    configs = []
    for i in range(20):
        path = tmp_path / f"g{i:02d}.cfg"
        path.write_text(guest_config_text(f"g{i:02d}", 128, 1))
        configs.append(path)
    procs = [subprocess.Popen(["xl", "create", "--quiet", str(p)], stderr=subprocess.PIPE) for p in configs]
    results = [(p.wait(timeout=60), p.stderr.read()) for p in procs]
    for p in procs:
        p.stderr.close()
    assert all(rc == 0 for rc, _ in results), results
    state = json.loads(host.state_path(sim_state).read_text())  # valid JSON, not half a file
    guests = [d for d in state["domains"] if d["domid"] != 0]
    assert sorted(d["name"] for d in guests) == [f"g{i:02d}" for i in range(20)]
    assert len({d["domid"] for d in guests}) == 20


def test_concurrent_readers_never_see_a_broken_state_while_writers_run(sim_env, sim_state, tmp_path):
    path = tmp_path / "w.cfg"
    path.write_text(guest_config_text("w", 128, 1))
    writers = [subprocess.Popen(["xl", "create", "-q", str(path), f'name="w{i}"'], stderr=subprocess.DEVNULL)
               for i in range(8)]
    readers = [subprocess.Popen(["xl", "list"], stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(8)]
    for r in readers:
        out, err = r.communicate(timeout=60)
        assert r.returncode == 0, err
        assert out.startswith(b"Name ")
    assert all(w.wait(timeout=60) == 0 for w in writers)
