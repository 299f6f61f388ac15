"""The simulated `xl create` accepts the policy keys silently, as real xl does (libxlu stores any key;
xl's parse_config_data reads only the keys it knows)."""

from __future__ import annotations

import os
import subprocess

from xdcore.sim import host
from xdcore.sim.testing import guest_config_text, make_host


def test_xl_create_ignores_xendomains_keys(tmp_path):
    layout = make_host(tmp_path / "h")
    cfg = layout.configs_dir / "db.cfg"
    cfg.write_text(guest_config_text("db", 256, 1) + 'xendomains_order = 10\nxendomains_up_wait = "ready"\n'
                   'xendomains_stop = [ "migrate", "shutdown" ]\nxendomains_bogus_key = 3\n')
    env = {**os.environ, "PATH": f"{layout.bin_dir}{os.pathsep}{os.environ['PATH']}", "XDSIM_STATE": str(layout.state_dir)}
    r = subprocess.run(["xl", "create", str(cfg)], capture_output=True, text=True, env=env, timeout=30)
    assert r.returncode == 0, r.stderr
    assert "xendomains" not in r.stderr and "warning" not in r.stderr.lower()
    assert any(d.name == "db" for d in host.load_snapshot(layout.state_dir).domains)
