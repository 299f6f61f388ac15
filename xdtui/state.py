"""What the App and its screens share: passed to each screen, never reached for through the App.

No Textual here.  `ConsoleState` is the one small model object both sides
import (so no screen imports `xdtui.app`): the host, the providers, the
operator's choices for the next run, and the run this console launched —
the one its hangup is reported to.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .host import HostContext
from .launch import Launched
from .providers import Providers
from .runs import RunPrefs


@dataclass
class ConsoleState:
    host: HostContext
    providers: Providers
    prefs: RunPrefs = field(default_factory=RunPrefs)
    attach_poll: float = 0.2
    launched: Launched | None = None  # the last run this console launched
    launched_at: float = 0.0
    launch_grace: float = 15.0  # seconds after a launch, and between looks, until a run not yet begun is looked for
    own_run: str = ""  # its run id, once its RunStarted was read from the progress file
    closing: bool = False
    tty: str | None = None  # this console's terminal, sent with each steering request (asked once: it may go away)
    said_once: set[str] = field(default_factory=set)  # notes the log gives once per console session (EventLog)

    def owns(self, run: str) -> bool:
        """`run` is the one this console launched (its RunStarted was adopted)."""
        return bool(run) and run == self.own_run

    def adopt(self, run: str, pid: int, at: float) -> bool:
        """A RunStarted read from the progress file: is it the run this console launched?  (Remembered.)"""
        la = self.launched
        if la is None or self.own_run or at < self.launched_at - 1.0:
            return False
        if la.pid and pid != la.pid:
            return False
        self.own_run = run
        return True
