"""xdtui: the Textual console of xendomains.

It drives the same `xdcore.service.Service` coroutines as the headless CLI,
on its own event loop, and draws only what the core reports: live domains
from the watcher, and runs from their events (live from the run's EventBus,
or read back from the progress file of a headless run).
"""
