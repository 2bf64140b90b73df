"""Links to a token: one small interface, written once, with serial (and later BLE) behind it.

The sync protocol (`host_tools.sync_client`) is written once over `Transport`, the way mpremote
writes its file operations once over its own transport. A transport moves bytes and nothing
else: framing, retries and meaning live above it.
"""
from __future__ import annotations

from host_tools.transport.base import Transport
from host_tools.transport.serial_port import SerialTransport, expand_ports

__all__ = ["Transport", "SerialTransport", "expand_ports", "open_transport"]


BLE_PREFIX = "ble:"


def open_transport(port: str, baud: int = 115200) -> Transport:
    """A transport for a port name as the user typed it: `ble:SERIAL` or `ble:ADDRESS` for a
    token with its Bluetooth sync window open, else a serial device or pty."""
    if port.startswith(BLE_PREFIX):
        from host_tools.transport.ble import BleTransport  # bleak loads only when BLE is used

        return BleTransport(port[len(BLE_PREFIX):])
    return SerialTransport(port, baud=baud)
