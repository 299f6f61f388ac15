"""The xm flavour: tab-less list, SXP `list -l` in xend's PrettyPrint layout, xm save images."""

from __future__ import annotations

from xdcore.model import ImageKind, sniff_image
from xdcore.sim import host
from xdcore.sim.sxp import prettyprint
from xdcore.sim.testing import make_host

from .helpers import fixture, reference_host, run


def test_xm_list_has_no_tabs_and_right_aligned_state(sim_env, sim_state):
    reference_host(sim_state, all_states=False)
    out = run("xm", "list").stdout.decode()
    sample = fixture("xm_list_samples.txt").decode().splitlines()
    assert out.splitlines() == sample[1:4]


def test_xm_list_long_prints_domains_in_the_prettyprint_layout(sim_env, sim_state):
    reference_host(sim_state, all_states=False)
    out = run("xm", "list", "-l").stdout.decode()
    lines = out.splitlines()
    assert lines[0] == "(domain" and "    (domid 0)" in lines and "    (name debian12)" in lines
    assert "    (state -b----)" in lines
    assert "    (image (linux (kernel '')))" in lines
    assert lines.count(")") == 2 and out.endswith(")\n")
    assert all(len(line) <= 80 for line in lines)


def test_prettyprint_reproduces_the_reference_layout():
    sxpr = ["domain", ["domid", 3], ["name", "debian12"], ["cpu_time", 5624.2], ["start_time", 1700000100.5],
            ["image", ["linux", ["kernel", "/boot/vmlinuz-2.6.32-xen"], ["args", "root=/dev/xvda1 ro"]]],
            ["device", ["vbd", ["uname", "phy:/dev/vg0/debian12"], ["dev", "xvda"], ["mode", "w"]]]]
    assert prettyprint(sxpr) == (
        "(domain\n    (domid 3)\n    (name debian12)\n    (cpu_time 5624.2)\n    (start_time 1700000100.5)\n"
        "    (image\n        (linux (kernel /boot/vmlinuz-2.6.32-xen) (args 'root=/dev/xvda1 ro'))\n    )\n"
        "    (device (vbd (uname phy:/dev/vg0/debian12) (dev xvda) (mode w)))\n)\n"
    )
    assert prettyprint(["a", ["b", "c"]]) == "(a (b c))\n"
    assert prettyprint(["x", "it's", "", 11794.312345678]) == "(x \"it's\" '' 11794.3123457)\n"


def test_xm_shutdown_accepts_halt_and_waits(sim_env, sim_state):
    make_host(sim_state, [("old", 512, 1)])
    done = run("xm", "shutdown", "-H", "-w", "old")
    assert (done.returncode, done.stdout) == (0, b"Domain old terminated\n")
    assert [d.name for d in host.load_snapshot(sim_state).domains] == ["Domain-0"]


def test_xm_save_writes_a_linux_guest_record_and_restore_brings_it_back(sim_env, sim_state, tmp_path):
    make_host(sim_state, [("old", 512, 1)])
    image = tmp_path / "old"
    assert run("xm", "save", "old", str(image)).returncode == 0
    assert sniff_image(image) is ImageKind.XM
    assert image.read_bytes()[20:27] == b"(domain"
    assert run("xl", "restore", str(image)).returncode == 1  # not an xl image
    assert run("xm", "restore", str(image)).returncode == 0
    assert "old" in [d.name for d in host.load_snapshot(sim_state).domains]


def test_xm_errors_for_unknown_domains(sim_env):
    done = run("xm", "list", "nosuch")
    assert (done.stderr, done.returncode) == (b"Error: Domain 'nosuch' does not exist.\n", 3)


def test_xm_create_dryrun_prints_a_vm_form_and_defaults_the_name_to_the_file(sim_env, tmp_path):
    cfg = tmp_path / "nameless"
    cfg.write_text('memory = 256\nkernel = "/k"\nextra = "root=/dev/xvda1 ro"\n')
    out = run("xm", "create", "-q", "--dryrun", str(cfg)).stdout.decode()
    assert out.startswith("(vm\n    (name nameless)\n    (memory 256)\n")
