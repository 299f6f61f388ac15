"""Steering a headless run from `xdtui --attach`: its control socket, seen from the console.

A running `xendomains start|stop` listens on `control.sock` beside its
progress file (see `xdcore.control_socket`).  Whether the console may use it is
found by asking (`probe`: root or the run's own user only, and only while
the run lives); the answer, with the reason when it is no, is a `Steering`
value the attach screen shows in its header.  Each intervention is a
`Request` — the wire request and a phrase saying what it does — and
`send` turns the reply (or the refusal) into an `Answer` for a toast.

No Textual here: the attach screen calls `probe` in a thread and `send` in
a worker, and turns their results into messages.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from xdcore.control_socket import ControlClient, ControlError, can_control, socket_path
from xdcore.pipeline.stages import STAGES


@dataclass(frozen=True, slots=True)
class Steering:
    """May the console steer the attached run?  `reason` says why not; `path` is the socket."""

    allowed: bool
    reason: str = ""
    path: Path | None = None

    @property
    def label(self) -> str:
        return "steering" if self.allowed else f"read-only: {self.reason}"


NO_RUN = Steering(False, "no run to steer yet")
CHECKING = Steering(False, "checking the run's control socket…")
FINISHED = Steering(False, "the run has finished")


def probe(progress: Path, timeout: float = 2.0) -> Steering:
    """Ask the socket beside `progress` (blocking: call it in a thread)."""
    path = socket_path(progress)
    if can_control(path, timeout):
        return Steering(True, path=path)
    try:
        present = path.is_socket()
    except OSError:  # e.g. a directory we may not search
        return Steering(False, f"no permission on {path}", path)
    if not present:
        return Steering(False, "the run has no control socket", path)
    try:  # ask once more, for the reason
        ControlClient(path, timeout).status()
    except ControlError as exc:
        if isinstance(exc.__cause__, PermissionError) or str(exc).startswith("permission denied"):
            return Steering(False, f"no permission on {path}", path)
        return Steering(False, str(exc), path)
    return Steering(True, path=path)  # it came up between the two questions


@dataclass(frozen=True, slots=True)
class Request:
    """One intervention: the control-socket request, and `what` it does in words ("skip web01's Save")."""

    op: str
    args: tuple[tuple[str, object], ...] = ()
    what: str = ""

    def wire(self) -> dict[str, object]:
        return {"op": self.op, **dict(self.args)}


def _title(stage: str) -> str:
    st = STAGES.get(stage)
    return st.title if st else stage


def skip_stage(guest: str, stage: str) -> Request:
    return Request("skip_stage", (("guest", guest), ("stage", stage)), f"skip {guest}'s {_title(stage)}")


def skip_guest(guest: str) -> Request:
    return Request("skip_guest", (("guest", guest),), f"leave {guest} out of the run")


def abort(now: bool = False) -> Request:
    return Request("abort", (("now", now),), "abort the run now" if now else "abort the run")


def set_parallel(n: int) -> Request:
    return Request("set_parallel", (("value", n),), f"handle {n} guest{'s' if n != 1 else ''} at once")


def set_stage(stage: str, enabled: bool) -> Request:
    return Request("set_stage", (("stage", stage), ("enabled", enabled)),
                   f"turn {_title(stage)} {'on' if enabled else 'off'}")


def set_migrate_target(words: Sequence[str] | None) -> Request:
    value = shlex.join(words) if words else None
    return Request("set_migrate_target", (("value", value),),
                   f"migrate to {' '.join(words)}" if words else "go back to XENDOMAINS_MIGRATE")


def move_guest(guest: str, target: str) -> Request:
    return Request("move_guest", (("guest", guest), ("target", target)), f"move {guest} to {target}")


@dataclass(frozen=True, slots=True)
class Answer:
    """What became of a request: `text` is for the operator (a toast)."""

    request: Request
    ok: bool
    text: str


async def send(path: Path, req: Request, timeout: float = 5.0, tty: str | None = None) -> Answer:
    """Send one request over the socket (async: never blocks the loop); refusals become a failed Answer.

    `tty` names this console's terminal: the run logs it (with our uid) beside the intervention.
    """
    try:
        await ControlClient(path, timeout, tty=tty).call(req.wire())
    except ControlError as exc:
        return Answer(req, False, f"Could not {req.what}: {exc}")
    return Answer(req, True, f"The run accepted: {req.what}.")


__all__ = ["Answer", "CHECKING", "FINISHED", "NO_RUN", "Request", "Steering", "abort", "probe", "send",
           "move_guest", "set_migrate_target", "set_parallel", "set_stage", "skip_guest", "skip_stage"]
