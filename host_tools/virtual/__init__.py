"""The virtual token: the firmware on the real MicroPython unix port, behaving like a
USB-connected ESP32 token (see docs/virtual-token.md).

    from host_tools.virtual import control
    info = control.start(name="alice", state="/tmp/alice", scenario="walk.jsonl", air="/tmp/air")
    ...  # info["pty"] is the serial port; mpremote and the sync tools open it
    control.stop(state="/tmp/alice")
"""
