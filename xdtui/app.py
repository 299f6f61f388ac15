"""The console App and its one factory, `make_app` — used by the CLI, the tests and the screenshot script.

The console is a client: it never owns a run.  The host view launches
headless `xendomains` runs and shows whatever run the progress file holds;
attach shows the same run full screen (see `xdtui.screens.run_view`).  The
App only hosts the screens, hands each the shared `ConsoleState`, and
handles leaving: q / ctrl+q leave (a run goes on), and when the terminal
goes away (SIGHUP, or the tty read fails) the run this console launched is
told so over its control socket — it continues or stops at a clean point,
as chosen in the plan dialog, and records the hangup in its report.
"""

from __future__ import annotations

import signal
import sys

from textual.app import App
from textual.binding import Binding
from textual.command import SearchIcon

from xdcore.control_socket import ControlClient, ControlError, own_tty, socket_path

from .commands import HostCommands
from .follow import headless_run_in_progress
from .host import HostContext
from .providers import Providers
from .screens.attach import AttachScreen
from .screens.host import HostScreen
from .state import ConsoleState


# The palette's search mark: Textual's 🔎 is missing from common terminal and SVG fonts and some terminals draw
# it two cells wide, which shifts the rest of the line (the screenshots showed both).  A mark every font has.
SearchIcon.icon = "›"  # type: ignore[assignment]


class XdApp(App[int]):
    """xdtui: the host view, the stage board, and attach."""

    CSS_PATH = "app.tcss"
    TITLE = "xendomains"
    COMMANDS = App.COMMANDS | {HostCommands}
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (120, "-wide")]
    VERTICAL_BREAKPOINTS = [(0, "-short"), (36, "-tall")]
    BINDINGS = [Binding("ctrl+q", "quit", "Quit", show=False, priority=True)]

    def __init__(self, host: HostContext, providers: Providers | None = None, *, attach: str = "auto",
                 attach_poll: float = 0.2, handle_signals: bool = False) -> None:
        super().__init__()
        self.state = ConsoleState(host, providers or Providers(), attach_poll=attach_poll, tty=own_tty())
        self.attach_mode = attach  # "auto" | "force" | "off"
        self.handle_signals = handle_signals
        self.exit_reason = ""
        self.host_screen: HostScreen | None = None
        self.sub_title = host.label or self.state.providers.hostname()
        self.title = "xendomains console"

    @property
    def host(self) -> HostContext:
        return self.state.host

    @property
    def providers(self) -> Providers:
        return self.state.providers

    @property
    def prefs(self):
        return self.state.prefs

    def get_driver_class(self):
        """On Linux/Unix, a driver that survives the terminal going away (see xdtui.terminal)."""
        from textual import constants

        if constants.DRIVER is None and sys.platform != "win32":
            from .terminal import HangupSafeDriver

            return HangupSafeDriver
        return super().get_driver_class()

    def on_mount(self) -> None:
        self.host_screen = HostScreen(self.state)
        self.push_screen(self.host_screen)
        if self.attach_mode == "force" or (self.attach_mode == "auto" and headless_run_in_progress(self.host.cfg.progress)):
            self.push_screen(AttachScreen(self.state))
        if self.handle_signals:
            import asyncio

            loop = asyncio.get_running_loop()
            loop.add_signal_handler(signal.SIGHUP, self._hangup)
            loop.add_signal_handler(signal.SIGTERM, self.leave_cleanly, "terminated")

    # -- leaving -----------------------------------------------------------------------------------------------------

    def _hangup(self) -> None:
        """SIGHUP: the terminal is gone — stop drawing, tell our run, leave."""
        gone = getattr(self._driver, "terminal_gone", None)
        if gone is not None:
            gone()
        self.leave_cleanly("hangup")

    def tell_run_of_hangup(self) -> bool:
        """The run this console launched learns its terminal went away (it continues or stops, as chosen)."""
        st = self.state
        running = headless_run_in_progress(self.host.cfg.progress)
        if running is None or not st.owns(running.run):
            return False  # ours has finished (or never started); never tell another's run
        try:
            ControlClient(socket_path(self.host.cfg.progress), timeout=2.0, tty=st.tty).hangup()
        except ControlError:
            return False  # finished already, or never started: nothing to tell
        return True

    def leave_cleanly(self, reason: str = "quit") -> None:
        """Leave the console; a run goes on (it is headless) unless it was told to stop on hangup."""
        self.exit_reason = reason
        self.state.closing = True
        if reason == "hangup":
            self.tell_run_of_hangup()
            self.exit(0)
            return
        running = headless_run_in_progress(self.host.cfg.progress)
        self.exit(0, message=None if running is None else
                  f"xdtui: the {running.verb} run (pid {running.pid}) goes on headless: `xdtui` attaches to it again, "
                  f"`xendomains report {running.verb}` tells how it ended.")

    async def action_quit(self) -> None:
        self.leave_cleanly("quit")


def make_app(host: HostContext, providers: Providers | None = None, *, attach: str = "auto",
             attach_poll: float = 0.2, handle_signals: bool = False) -> XdApp:
    """The one factory: CLI, tests and the screenshot script build the console here."""
    return XdApp(host, providers, attach=attach, attach_poll=attach_poll, handle_signals=handle_signals)
