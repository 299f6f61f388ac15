"""xdcore: the headless heart of xendomains.

Everything the service means lives here: config, the toolstack port and its
adapters, the start/stop pipelines, the lock, events, XenStore access and the
simulated Xen host.  This package never imports Textual or Rich, so that the
`xendomains` command starts fast at boot and the console is only a consumer.
"""

__version__ = "0.1.0"
