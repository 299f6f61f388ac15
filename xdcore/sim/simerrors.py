"""How a simulated command ends early: the exit code and stderr text real xl/xm would give.

Raised deep inside the model (a config that does not parse, a domain that
does not exist) and turned into the process exit code by the command
dispatcher, or into `CommandFailed` by the in-process toolstack.
"""

from __future__ import annotations


class SimExit(Exception):
    """Stop the command with `code`; `stderr` is printed as is (include the newlines)."""

    def __init__(self, code: int, stderr: str = "", stdout: str = ""):
        self.code = code
        self.stderr = stderr
        self.stdout = stdout
        super().__init__(stderr.strip() or f"exit {code}")
