"""The virtual air: virtual tokens and host tools meet here through bumble's BLE stack.

Start one with `python -m host_tools.air --socket PATH [--scenario FILE] [--time-scale X]`
or `start_air(...)` (a background process). Virtual tokens join with the `bluetooth` module in
boards/virtual/; host tools join with `open_air_device(socket, name)` (a bumble Device whose
controller lives in the air), which the bleak backend (`host_tools.air.bleak_backend`) uses.
"""
