"""The simulated xl against what real xl 4.17.7 printed on real Xen (tests/fixtures/xen/real-4.17, captured by
tests/realxen): the same lines, once the values a real host decides (domids, paths, frame numbers) are masked."""

from __future__ import annotations

import re
import shutil

from xdcore.sim import host

from .helpers import FIXTURES, run

REAL = FIXTURES / "real-4.17"


def real(name: str) -> tuple[int, str, str]:
    rc = (REAL / f"{name}.rc").read_text().strip()
    return int(rc) if rc.lstrip("-").isdigit() else rc, (REAL / f"{name}.stdout").read_text(), \
        (REAL / f"{name}.stderr").read_text()


def mask(text: str) -> str:
    text = re.sub(r"(Saving to|Loading new save file) \S+", r"\1 IMG", text)
    text = re.sub(r"info 0x3/0x0/\d+", "info 0x3/0x0/LEN", text)
    text = re.sub(r"[Dd]omain \d+", "domain N", text)
    return re.sub(r"mfn 0x[0-9a-f]+", "mfn M", text)


def guest(tmp_path):
    """The busybox PV guest the captures were made with (96 MiB, one vCPU), created on the simulated host."""
    cfg = tmp_path / "guest.cfg"
    shutil.copy(REAL / "guest.cfg", cfg)
    done = run("xl", "create", str(cfg))
    assert done.returncode == 0, done.stderr
    return cfg


def test_save_prints_the_real_progress_lines(sim_env, tmp_path):
    guest(tmp_path)
    done = run("xl", "save", "guest", str(tmp_path / "img"))
    rc, _, err = real("xl_save")
    assert (done.returncode, mask(done.stderr.decode())) == (rc, mask(err))


def test_restore_prints_what_the_real_one_printed(sim_env, tmp_path):
    guest(tmp_path)
    assert run("xl", "save", "guest", str(tmp_path / "img")).returncode == 0
    done = run("xl", "restore", str(tmp_path / "img"))
    rc, _, err = real("xl_restore")
    assert (done.returncode, mask(done.stderr.decode())) == (rc, mask(err))


def test_restore_of_a_truncated_image_fails_as_the_real_one(sim_env, tmp_path):
    guest(tmp_path)
    img = tmp_path / "img"
    assert run("xl", "save", "guest", str(img)).returncode == 0
    data = img.read_bytes()
    img.write_bytes(data[:-16])  # the stream cut short, as a killed save leaves it (past the header and config)
    done = run("xl", "restore", str(img))
    rc, _, err = real("xl_restore_truncated")
    assert (done.returncode, mask(done.stderr.decode())) == (rc, mask(err))
    assert b"guest" not in run("xl", "list").stdout  # nothing left behind, as on real Xen


def test_save_of_no_such_domain(sim_env, tmp_path):
    done = run("xl", "save", "nosuch", str(tmp_path / "img"))
    rc, out, err = real("xl_save_nosuch")
    assert (done.returncode, done.stdout.decode(), done.stderr.decode()) == (rc, out, err)


def test_list_header_and_info_keys(sim_env, tmp_path):
    guest(tmp_path)
    assert run("xl", "list").stdout.decode().splitlines()[0] == real("xl_list")[1].splitlines()[0]
    keys = [line.split(":")[0].strip() for line in run("xl", "info").stdout.decode().splitlines()]
    assert keys == [line.split(":")[0].strip() for line in real("xl_info")[1].splitlines()]


def test_save_onto_a_full_file_system_fails_as_the_real_one(sim_env, sim_state, tmp_path):
    guest(tmp_path)
    with host.transaction(sim_state) as st:
        st.faults.append(host.Fault("save", "guest", "enospc"))
    done = run("xl", "save", "guest", str(tmp_path / "img"))
    rc, _, err = real("xl_save_enospc")
    # real xl reported one progress line before the disk filled: the simulated one fails before any
    real_lines = [line for line in mask(err).splitlines(True) if not line.startswith("xc: progress:")]
    assert (done.returncode, mask(done.stderr.decode())) == (rc, "".join(real_lines))
    assert b"guest" in run("xl", "list").stdout  # resumed, as on real Xen
