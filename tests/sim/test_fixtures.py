"""The simulated xl prints what the real xl 4.17 printed, byte for byte (tests/fixtures/xen)."""

from __future__ import annotations

import struct

from xdcore.model import XL_SAVE_MAGIC
from xdcore.sim import host

from .helpers import FIXTURES, fixture, reference_host, run


def test_plain_list_of_the_reference_host_matches_the_capture(sim_env, sim_state):
    reference_host(sim_state)
    done = run("xl", "list")
    assert (done.returncode, done.stdout, done.stderr) == (0, fixture("xl_list.txt"), b"")


def test_verbose_list_matches_the_capture(sim_env, sim_state):
    reference_host(sim_state)
    assert run("xl", "list", "-v").stdout == fixture("xl_listv.txt")


def test_basic_list_matches_the_capture(sim_env, sim_state):
    reference_host(sim_state, all_states=False)
    assert run("xl", "list").stdout == fixture("xl_list_basic.txt")


def test_long_list_matches_the_capture_and_warns_about_devices_missing_from_xenstore(sim_env, sim_state):
    reference_host(sim_state, all_states=False)
    done = run("xl", "list", "-l")
    assert done.returncode == 0
    assert done.stdout == fixture("xl_listl.txt")
    assert b"Device present in JSON but not in xenstore, ignored" in done.stderr


def test_long_list_of_one_domain_is_a_one_element_array(sim_env, sim_state):
    reference_host(sim_state, all_states=False)
    assert run("xl", "list", "-l", "debian12").stdout == fixture("xl_listl_one.txt")
    assert run("xl", "list", "-l", "3").stdout == fixture("xl_listl_one.txt")


def test_long_list_leaves_out_domains_without_stored_config_and_says_so(sim_env, sim_state):
    reference_host(sim_state)
    done = run("xl", "list", "-l", "paused-vm")
    assert done.stdout == b"[\n\n]\n\n"
    assert done.returncode == 0
    assert b"Domain 4:Fail to get domain configuration" in done.stderr


def test_info_matches_the_capture(sim_env, sim_state):
    reference_host(sim_state)
    with host.transaction(sim_state) as st:
        st.reserved_mib = st.total_memory_mib - 6144 - sum(d.current_kib for d in st.domains) // 1024
    assert run("xl", "info").stdout == fixture("xl_info.txt")
    assert run("xl", "info", "free_memory").stdout == b"6144\n"
    assert run("xl", "info", "free").stdout == b"6144\n0\n"
    assert (run("xl", "info", "nosuch").stdout, run("xl", "info", "nosuch").returncode) == (b"", 0)


def test_dry_run_create_matches_the_capture(sim_env):
    done = run("xl", "create", "--quiet", "--dryrun", "--defconfig", str(FIXTURES / "debian12.cfg"))
    assert (done.returncode, done.stdout, done.stderr) == (0, fixture("xl_dryrun.txt"), b"")


def test_dry_run_without_quiet_announces_the_config_on_stderr(sim_env):
    cfg = str(FIXTURES / "debian12.cfg")
    done = run("xl", "-N", "create", cfg)
    assert done.stdout == fixture("xl_dryrun.txt")
    assert done.stderr == f"Parsing config from {cfg}\n".encode()


def test_save_writes_the_captured_header_and_config_bytes(sim_env, sim_state, tmp_path):
    reference_host(sim_state, all_states=False, debian_userdata="dryrun")
    image = tmp_path / "debian12.save"
    done = run("xl", "save", "debian12", str(image))
    assert done.returncode == 0, done.stderr
    assert f"Saving to {image} new xl format (info 0x3/0x0/844)\n".encode() in done.stderr
    reference = fixture("xl_save_debian12.img")
    data = image.read_bytes()
    assert data[: len(reference)] == reference
    assert data[len(reference) : len(reference) + 8] == b"LibxlFmt"


def test_save_header_layout_of_a_created_guest(sim_env, sim_state, tmp_path):
    run("xl", "create", "--quiet", str(FIXTURES / "debian12.cfg"))
    image = tmp_path / "img"
    assert run("xl", "save", "debian12", str(image)).returncode == 0
    data = image.read_bytes()
    magic, order, mflags, oflags, olen = struct.unpack_from("<32sIIII", data)
    (clen,) = struct.unpack_from("<I", data, 48)
    assert (magic, order, mflags, oflags) == (XL_SAVE_MAGIC, 0x01020304, 3, 0)
    assert olen == 4 + clen
    assert data[52 + clen - 1] == 0 and data[52 : 52 + 4] == b"{\n  "
    assert b'"c_info": {' in data[:200] and b'"domid"' not in data[52 : 52 + clen]
