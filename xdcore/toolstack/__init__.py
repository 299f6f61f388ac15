"""The toolstack port (`port.Toolstack`) and its adapters: xl, xm, and the simulator."""
