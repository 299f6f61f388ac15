"""The core is headless: importing any xdcore module, or running `xendomains`, never loads textual or rich."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import pytest

import xdcore

MODULES = sorted(m.name for m in pkgutil.walk_packages(xdcore.__path__, "xdcore."))
CHECK = "import sys, importlib; importlib.import_module({mod!r}); bad=[m for m in sys.modules if m.split('.')[0] in ('textual','rich','xdtui')]; print(bad); sys.exit(1 if bad else 0)"


@pytest.mark.parametrize("mod", MODULES)
def test_importing_a_core_module_loads_no_ui_library(mod):
    r = subprocess.run([sys.executable, "-c", CHECK.format(mod=mod)], capture_output=True, text=True)
    assert r.returncode == 0, f"{mod} imported UI modules: {r.stdout} {r.stderr}"


def test_running_xendomains_loads_no_ui_library(tmp_path):
    conf = tmp_path / "x.conf"
    conf.write_text(f"XENDOMAINS_LOCKFILE={tmp_path}/lock\nXENDOMAINS_TOOLSTACK=xl\n")
    code = (
        "import sys, runpy; sys.argv=['xendomains','--config',%r,'help'];\n"
        "from xdcore.cli import main; rc=main(sys.argv[1:]);\n"
        "bad=[m for m in sys.modules if m.split('.')[0] in ('textual','rich','xdtui')]; print(bad); sys.exit(9 if bad else rc)"
    ) % str(conf)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
