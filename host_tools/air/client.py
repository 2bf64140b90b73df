"""Host-side access to a running virtual air: start one, join it over HCI, control it."""
from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from bumble.device import Device
from bumble.hci import Address
from bumble.transport.common import StreamPacketSink, StreamPacketSource, Transport

from host_tools.air import protocol as p
from host_tools.errors import TransportError


class AirProcess:
    """A virtual air in a background process (stopped by stop() or on exit of a with block)."""

    def __init__(self, socket_path: str | Path, scenario: str | Path | None = None,
                 time_scale: float | None = None, seed: int | None = None, log_path: str | Path | None = None):
        self.socket_path = str(socket_path)
        cmd = [sys.executable, "-m", "host_tools.air", "--socket", self.socket_path]
        if scenario is not None:
            cmd += ["--scenario", str(scenario)]
        if time_scale is not None:
            cmd += ["--time-scale", repr(float(time_scale))]
        if seed is not None:
            cmd += ["--seed", str(seed)]
        if os.path.exists(self.socket_path):
            os.unlink(self.socket_path)  # a stale socket would look like a ready air
        log = open(log_path, "ab") if log_path else subprocess.DEVNULL
        self.process = subprocess.Popen(cmd, stdout=log, stderr=log)
        deadline = time.monotonic() + 20
        while not os.path.exists(self.socket_path):
            if self.process.poll() is not None:
                raise TransportError(f"the virtual air exited at start (code {self.process.returncode}).")
            if time.monotonic() > deadline:
                self.stop()
                raise TransportError("the virtual air did not open its socket within 20 s.")
            time.sleep(0.05)

    def control(self, request: dict) -> dict:
        return control(self.socket_path, request)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> "AirProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def control(socket_path: str, request: dict, timeout_s: float = 10.0) -> dict:
    """One request to the air's control channel (status, move, inject)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout_s)
        try:
            sock.connect(socket_path)
        except OSError as error:
            raise TransportError(f"no virtual air at {socket_path} ({error.strerror}).") from None
        sock.sendall(p.CONTROL_MAGIC + json.dumps(request).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    answer = json.loads(data)
    if "error" in answer:
        raise TransportError(f"virtual air refused {request.get('op')}: {answer['error']}")
    return answer


async def open_air_transport(socket_path: str, name: str) -> Transport:
    """An HCI transport to a new controller of our own in the air."""

    class _Source(StreamPacketSource):
        def connection_lost(self, exc):
            self.on_transport_lost()

    loop = asyncio.get_running_loop()
    try:
        transport, source = await loop.create_unix_connection(_Source, socket_path)
    except OSError as error:
        raise TransportError(f"no virtual air at {socket_path} ({error.strerror or error}).") from None
    encoded = name.encode()[:255]
    transport.write(p.HCI_MAGIC + bytes([len(encoded)]) + encoded)
    return Transport(source, StreamPacketSink(transport))


async def open_air_device(socket_path: str, name: str = "host") -> tuple[Device, Transport]:
    """A powered-on bumble Device in the air; close the transport when done."""
    transport = await open_air_transport(socket_path, name)
    raw = bytearray(os.urandom(6))
    raw[5] |= 0xC0
    device = Device.with_hci(name, Address(bytes(raw), Address.RANDOM_DEVICE_ADDRESS), transport.source, transport.sink)
    await device.power_on()
    return device, transport
