"""The README's first two commands work on stock Debian, whose python3 refuses `pip install` (PEP 668).

CI runs them for real (`.ci/readme-check`, called by `.ci/run`, on /usr/bin/python3
in a clean directory, the console driven in tmux); these tests hold the texts
to what that check relies on.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    block = re.search(r"^```sh\n(.*?)^```", text, re.S | re.M)
    assert block, "README.md opens with no ```sh block"
    return [re.sub(r"\s+#.*$", "", line) for line in block.group(1).splitlines()]


def test_the_first_command_makes_a_venv_and_runs_the_demo_from_it():
    first, second = _readme_commands()[:2]
    steps = [s.strip() for s in first.split("&&")]
    assert re.fullmatch(r"python3 -m venv (\S+)", steps[0]), steps
    venv = steps[0].split()[-1]
    assert steps[1] == f"{venv}/bin/pip install -e ."  # never the system pip
    assert steps[2] == f"{venv}/bin/xdtui --demo"
    assert second == "bash .ci/run"


def test_ci_run_uses_a_venv_and_runs_the_readme_check():
    run = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    assert "-m venv" in run and '"$venv/bin/python" -m pytest' in run
    assert "python3-venv" in run
    assert not re.search(r"^\s*python3 -m pip", run, re.M)  # refused on Debian's python3
    assert "bash .ci/readme-check" in run
    check = REPO / ".ci" / "readme-check"
    assert "/usr/bin/python3" in check.read_text(encoding="utf-8")
    subprocess.run(["bash", "-n", str(check)], check=True)
    subprocess.run(["bash", "-n", str(REPO / ".ci" / "run")], check=True)


def test_needs_apt_marks_exactly_the_tests_that_need_debian_packages():
    import sys

    def collected(*args: str) -> set[str]:
        done = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *args],
                              capture_output=True, text=True, cwd=REPO, timeout=300)
        return {line.split("::")[0] for line in done.stdout.splitlines() if "::" in line}

    marked = collected("-m", "needs_apt", "tests/xenstore/test_real_utils.py", "tests/tui/test_tmux.py",
                       "tests/core/test_estimate.py")
    assert marked == {"tests/xenstore/test_real_utils.py", "tests/tui/test_tmux.py"}
