"""Messages that cross from workers and the app to the screens: typed, past tense.

Workers run on the app's event loop (never threads), so they may post these
directly; the widgets are touched only by the handlers that receive them.
"""

from __future__ import annotations

from collections.abc import Sequence

from textual.message import Message

from xdcore.events import Event
from xdcore.model import AutoConfig, HostInfo, SaveImage
from xdcore.xenstore.watcher import DomainsChanged

from .launch import Launched
from .providers import Dom0Figures
from .steer import Answer, Steering


class EventsArrived(Message):
    """Run events, in order, read from the progress file (every run the console shows is a headless one).

    `reset` says the progress file was replaced (a new run): start the board over.
    """

    def __init__(self, events: Sequence[Event], *, source: str = "live", reset: bool = False) -> None:
        super().__init__()
        self.events = tuple(events)
        self.source = source
        self.reset = reset


class DomainsRefreshed(Message):
    """The watcher yielded the current guests and what changed."""

    def __init__(self, change: DomainsChanged) -> None:
        super().__init__()
        self.change = change


class HostListsRead(Message):
    """The auto directory and the save directory were read."""

    def __init__(self, autos: Sequence[AutoConfig], images: Sequence[SaveImage]) -> None:
        super().__init__()
        self.autos = tuple(autos)
        self.images = tuple(images)


class HostFiguresMeasured(Message):
    """dom0 figures (psutil) and, when it answered, `xl info`."""

    def __init__(self, dom0: Dom0Figures | None, xen: HostInfo | None, xen_error: str = "") -> None:
        super().__init__()
        self.dom0 = dom0
        self.xen = xen
        self.xen_error = xen_error


class RunLaunched(Message):
    """A headless `xendomains` run was started (or could not be: `error`)."""

    def __init__(self, launched: "Launched | None", error: str = "") -> None:
        super().__init__()
        self.launched = launched
        self.error = error


class SteeringChecked(Message):
    """The attached run's control socket was asked whether we may steer (`run`: the run it was asked for)."""

    def __init__(self, run: str, steering: Steering) -> None:
        super().__init__()
        self.run = run
        self.steering = steering


class ControlAnswered(Message):
    """The headless run answered (or refused, or could not be reached) one intervention."""

    def __init__(self, answer: Answer) -> None:
        super().__init__()
        self.answer = answer
