"""BLE transport: the sync protocol's byte pipe over the token's GATT sync service, via bleak.

`--port ble:SERIAL` finds the token advertising its sync window under its serial (scan
response name) and connects; `--port ble:AA:BB:CC:DD:EE:FF` connects to that address. Requests
go out as writes with response of at most MTU-3 bytes to the rx characteristic; answers come
back as notifications on tx (UUIDs in tokenfw.ble_sync and docs/ble.md).

bleak is asyncio; the Transport interface is blocking. The transport runs its own event loop
in a background thread and hands bytes across with a condition variable.

The production path is bleak's platform backend (BlueZ, WinRT, CoreBluetooth). With
TOKENTOOL_AIR set (or `air=`), bleak gets the virtual air's backend instead, so the very same
code talks to virtual tokens.

Link loss: when the connection drops, the next write reconnects (the token offers its sync
service again under the same address while its window is open) and the sync client's own
retry resends the request, so a dump resumes where it stopped.
"""
from __future__ import annotations

import asyncio
import os
import re
import threading
import time
from typing import Any

from host_tools.errors import TransportError, UsageError
from host_tools.transport.base import Transport
from tokenfw.ble_sync import RX_UUID, SERVICE_UUID, TX_UUID

_ADDRESS = re.compile(r"^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$")
_SERIAL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,28}$")
_RECONNECT_ATTEMPTS = 3


def backend_kwargs(air: str | None = None) -> dict[str, Any]:
    """bleak keyword arguments: the virtual air's backend when one is named, else none."""
    air = air or os.environ.get("TOKENTOOL_AIR")
    if not air:
        return {}
    from host_tools.air.bleak_backend import AirClient, AirScanner

    return {"air": air, "scanner_backend": AirScanner, "client_backend": AirClient}


async def find_sync_windows(timeout_s: float, air: str | None = None,
                            want: str | None = None) -> list[tuple[str, str | None, int]]:
    """(address, name, rssi) of tokens advertising an open sync window, strongest first. With
    `want` (a serial), stop as soon as that token is seen."""
    from bleak import BleakScanner

    kwargs = backend_kwargs(air)
    scanner_kwargs: dict[str, Any] = {"service_uuids": [SERVICE_UUID.lower()]}
    if kwargs:
        scanner_kwargs.update(backend=kwargs["scanner_backend"], air=kwargs["air"])
    found: dict[str, tuple[str, str | None, int]] = {}
    wanted = asyncio.Event()

    def seen(device, adv) -> None:
        if SERVICE_UUID.lower() in adv.service_uuids:
            previous = found.get(device.address)
            name = adv.local_name or (previous[1] if previous else None)
            found[device.address] = (device.address, name, adv.rssi)
            if want is not None and name == want:
                wanted.set()

    try:
        async with BleakScanner(seen, **scanner_kwargs):
            try:
                await asyncio.wait_for(wanted.wait(), timeout_s)
            except asyncio.TimeoutError:
                pass
    except Exception as error:  # bleak raises its own errors and OS ones (no adapter, no permission)
        raise TransportError(f"cannot scan for tokens over Bluetooth: {error}") from None
    return sorted(found.values(), key=lambda item: -item[2])


class BleTransport(Transport):
    def __init__(self, target: str, *, air: str | None = None, scan_timeout_s: float = 8.0,
                 connect_timeout_s: float = 15.0) -> None:
        if not (_ADDRESS.match(target) or _SERIAL.match(target)):
            raise UsageError(f"ble:{target} is neither a token serial nor a Bluetooth address")
        self.name = f"ble:{target}"
        self._target = target
        self._kwargs = backend_kwargs(air)
        self._scan_timeout_s = scan_timeout_s
        self._connect_timeout_s = connect_timeout_s
        self._inbox = bytearray()
        self._cond = threading.Condition()
        self._client: Any = None  # a connected bleak.BleakClient, or None between links
        self._address: str | None = target if _ADDRESS.match(target) else None
        self._closed = False
        self.reconnects = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="ble-transport", daemon=True)
        self._thread.start()
        try:
            self._run(self._connect(), self._scan_timeout_s + self._connect_timeout_s + 10)
        except BaseException:
            self.close()
            raise

    # -- the event loop thread -------------------------------------------------------------
    def _run(self, coro, timeout_s: float):
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(timeout_s)
        except TimeoutError:
            future.cancel()
            raise TransportError(f"{self.name} did not answer within {timeout_s:.0f} s") from None

    async def _resolve(self) -> str:
        if self._address is not None:
            return self._address
        found = await find_sync_windows(self._scan_timeout_s, self._kwargs.get("air"), want=self._target)
        for address, name, _ in found:
            if name == self._target:
                self._address = address
                return address
        raise TransportError(
            f"token {self._target} is not offering Bluetooth sync; press its button to open a sync window"
        )

    async def _connect(self) -> None:
        from bleak import BleakClient

        address = await self._resolve()
        kwargs: dict[str, Any] = {"timeout": self._connect_timeout_s, "disconnected_callback": self._on_disconnect}
        if self._kwargs:
            kwargs.update(backend=self._kwargs["client_backend"], air=self._kwargs["air"])
        client = BleakClient(address, **kwargs)
        try:
            await client.connect()
            if client.services.get_characteristic(RX_UUID.lower()) is None:
                await client.disconnect()
                raise TransportError(f"{address} does not offer the token sync service")
            await client.start_notify(TX_UUID.lower(), self._on_notify)
        except TransportError:
            raise
        except Exception as error:  # bleak and OS errors: one sentence for the user
            raise TransportError(f"cannot connect to token {self._target} over Bluetooth: {error}") from None
        self._client = client

    def _on_notify(self, _characteristic, data: bytearray) -> None:
        with self._cond:
            self._inbox += data
            self._cond.notify_all()

    def _on_disconnect(self, _client) -> None:
        self._client = None
        with self._cond:
            self._cond.notify_all()

    async def _write(self, data: bytes) -> None:
        client = self._client
        if client is None:
            raise TransportError(f"lost the Bluetooth link to {self._target}")
        step = max(20, min(512, client.mtu_size - 3))
        for start in range(0, len(data), step):
            await client.write_gatt_char(RX_UUID.lower(), data[start : start + step], response=True)

    def _reconnect(self) -> None:
        last: Exception | None = None
        for _ in range(_RECONNECT_ATTEMPTS):
            try:
                self._run(self._connect(), self._connect_timeout_s + 10)
                self.reconnects += 1
                return
            except TransportError as error:
                last = error
                time.sleep(0.2)
        raise TransportError(f"lost the Bluetooth link to {self._target} and could not reconnect ({last})")

    @property
    def mtu(self) -> int:
        """The ATT MTU negotiated with the token (23 until the exchange)."""
        client = self._client
        return client.mtu_size if client is not None else 23

    # -- Transport ---------------------------------------------------------------------------
    def write(self, data: bytes) -> None:
        if self._closed:
            raise TransportError(f"{self.name} is closed")
        for attempt in (1, 2):
            if self._client is None:
                self._reconnect()
            try:
                self._run(self._write(bytes(data)), 30)
                return
            except Exception as error:  # the link dropped under the write: reconnect, send again
                self._client = None
                if attempt == 2:
                    raise TransportError(f"lost the Bluetooth link to {self._target} while sending ({error})") from None

    def read(self, timeout_s: float) -> bytes:
        deadline = time.monotonic() + max(0.0, timeout_s)
        with self._cond:
            while not self._inbox:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return b""
                self._cond.wait(remaining)
            data = bytes(self._inbox)
            self._inbox.clear()
            return data

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        client = self._client
        self._client = None
        if client is not None:
            try:
                self._run(client.disconnect(), 10)
            except Exception:  # noqa: BLE001 - closing is best effort
                pass
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
