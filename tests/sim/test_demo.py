"""`xdsim demo` lays out a usable host."""

from __future__ import annotations

from xdcore.model import ImageKind, sniff_image
from xdcore.sim.cli import main as xdsim

from .helpers import run


def test_demo_host_is_laid_out_and_xl_list_shows_it(tmp_path, capsys):
    state = tmp_path / "demo"
    assert xdsim(["--state", str(state), "demo", "--fast"]) == 0
    usage = capsys.readouterr().out
    assert f"--config {state.resolve()}/xendomains.conf stop" in usage
    conf = (state / "xendomains.conf").read_text()
    for line in (f'XENDOMAINS_AUTO="{state.resolve()}/auto"', f'XENDOMAINS_SAVE="{state.resolve()}/save"',
                 f"XENDOMAINS_LOCKFILE={state.resolve()}/lock/xendomains",
                 f"XENDOMAINS_PROGRESS={state.resolve()}/run/progress.jsonl", "XENDOMAINS_TOOLSTACK=xl"):
        assert line in conf
    out = run(str(state / "bin" / "xl"), "list").stdout.decode()
    for name in ("Domain-0", "web01", "db-primary", "backup", "(null)"):  # legacy-app is a zombie: no name left
        assert f"\n{name} " in out
    assert "--p--d" in out and "legacy-app" not in out
    saved = sorted((state / "save").iterdir())
    assert [p.name for p in saved] == ["gitlab", "wiki"]
    assert all(sniff_image(p) is ImageKind.XL for p in saved)
    auto = {p.name: p.is_symlink() for p in (state / "auto").iterdir()}
    assert auto["web01.cfg"] and not auto["intranet.cfg"]
    assert "intranet" not in out
    restore = run(str(state / "bin" / "xl"), "restore", str(state / "save" / "wiki"))
    assert restore.returncode == 0, restore.stderr


def test_the_demo_has_two_migration_targets_beside_it_reachable_by_ssh(tmp_path, capsys):
    from xdcore.sim import host, pool

    state = tmp_path / "demo"
    assert xdsim(["--state", str(state), "demo", "--fast"]) == 0
    hosts = pool.read(host.load(state).pool)
    assert sorted(hosts) == ["xen-demo-01", "xen-demo-02", "xen-demo-03"]
    env = {"PATH": f"{state / 'bin'}:/usr/bin:/bin"}
    info = run("ssh", "xen-demo-03", "xl", "info", env=env)
    assert info.returncode == 0 and b"total_memory           : 16384" in info.stdout
    assert 'XENDOMAINS_MIGRATE_TARGETS="xen-demo-02 xen-demo-03"' in (state / "xendomains.conf").read_text()
    assert xdsim(["--state", str(state), "demo", "--fast"]) == 0  # laid out again over itself
    assert sorted(pool.read(host.load(state).pool)) == ["xen-demo-01", "xen-demo-02", "xen-demo-03"]
