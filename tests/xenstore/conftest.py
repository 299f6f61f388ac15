"""Fixtures: a simulated xenstored in a subprocess, and skips naming what is missing."""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support import wait_for
from xdcore.xenstore import _lib

REPO = Path(__file__).resolve().parents[2]

needs_lib = pytest.mark.skipif(
    not _lib.available(), reason="libxenstore.so.4 not installed (apt-get install libxenstore4)"
)
needs_utils = pytest.mark.skipif(
    shutil.which("xenstore-ls") is None, reason="xenstore-utils not installed (apt-get install xenstore-utils)"
)


def _connectable(path: Path) -> bool:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(str(path))
    except OSError:
        return False
    finally:
        s.close()
    return True


@dataclass
class Server:
    state_dir: Path
    socket: Path
    proc: subprocess.Popen

    def env(self) -> dict[str, str]:
        return {**os.environ, "XENSTORED_PATH": str(self.socket)}

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_server(state_dir: Path, socket_path: Path | None = None) -> Server:
    state_dir.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "xdcore.sim.xenstored", "--state", str(state_dir)]
    if socket_path is not None:
        argv += ["--socket", str(socket_path)]
    sock = socket_path or state_dir / "xenstored.sock"
    with open(state_dir / "xenstored.log", "ab") as log:  # kept for post-mortems of a failed test
        proc = subprocess.Popen(argv, cwd=REPO, stderr=log)
    server = Server(state_dir, sock, proc)
    try:
        wait_for(lambda: proc.poll() is not None or _connectable(sock), what="xenstored to listen")
        if proc.poll() is not None:
            pytest.fail(f"xenstored exited with {proc.returncode}")
    except BaseException:
        server.stop()
        raise
    return server


@pytest.fixture(scope="module")
def xenstored(tmp_path_factory):
    """One simulated xenstored per test module, with XENSTORED_PATH pointing at it."""
    server = start_server(tmp_path_factory.mktemp("xs"))
    saved = os.environ.get("XENSTORED_PATH")
    os.environ["XENSTORED_PATH"] = str(server.socket)
    try:
        yield server
    finally:
        server.stop()
        if saved is None:
            os.environ.pop("XENSTORED_PATH", None)
        else:
            os.environ["XENSTORED_PATH"] = saved


_counter = itertools.count()


@pytest.fixture
def base(request) -> str:
    """A fresh subtree per test so tests sharing one server never see each other's nodes."""
    return f"/test/t{next(_counter)}"
