"""Serial transport (USB-serial of an ESP32, or the pty of a virtual token) over pyserial."""
from __future__ import annotations

import glob
import os

import serial

from host_tools.errors import TransportError, UsageError
from host_tools.transport.base import Transport


def expand_ports(patterns: list[str]) -> list[str]:
    """Port arguments as typed (names, comma lists or globs such as /dev/ttyUSB*), expanded,
    de-duplicated, in order. A glob that matches nothing is an error, not an empty batch."""
    ports: list[str] = []
    for pattern in patterns:
        for part in pattern.split(","):
            part = part.strip()
            if not part:
                continue
            if any(ch in part for ch in "*?["):
                matches = sorted(glob.glob(part))
                if not matches:
                    raise UsageError(f"no port matches {part}; is the token plugged in?")
                candidates = matches
            else:
                candidates = [part]
            for name in candidates:
                if name not in ports:
                    ports.append(name)
    if not ports:
        raise UsageError("name at least one port with --port")
    return ports


class SerialTransport(Transport):
    def __init__(self, port: str, baud: int = 115200) -> None:
        self.name = port
        if not os.path.exists(port) and not port.startswith(("rfc2217://", "socket://", "COM")):
            raise TransportError(f"{port} does not exist; check the cable and the port name")
        try:
            # exclusive: two tokentools on one token would interleave frames.
            self._serial = serial.Serial(port, baudrate=baud, timeout=0, write_timeout=10, exclusive=True)
        except (serial.SerialException, OSError, ValueError) as error:
            raise TransportError(f"cannot open {port}: {_reason(error)}") from None

    def write(self, data: bytes) -> None:
        try:
            self._serial.write(data)
        except (serial.SerialException, OSError) as error:
            raise TransportError(f"lost the link to {self.name} while sending: {_reason(error)}") from None

    def read(self, timeout_s: float) -> bytes:
        try:
            self._serial.timeout = max(0.0, timeout_s)
            first = self._serial.read(1)
            if not first:
                return b""
            waiting = self._serial.in_waiting
            return first + (self._serial.read(waiting) if waiting else b"")
        except (serial.SerialException, OSError, TypeError) as error:
            # pyserial raises SerialException("device reports readiness to read but returned no
            # data") when the other end of a pty is closed: the cable was pulled.
            raise TransportError(f"lost the link to {self.name}: {_reason(error)}") from None

    def close(self) -> None:
        try:
            self._serial.close()
        except Exception:
            pass


def _reason(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text.rstrip(".")
