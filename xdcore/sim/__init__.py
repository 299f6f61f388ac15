"""The simulated Xen host: a model in a state directory, xl/xm executables acting on it,
a simulated xenstored mirroring it, and a demo host."""
