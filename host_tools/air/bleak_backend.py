"""A bleak backend on the virtual air: `BleakScanner(backend=AirScanner, air=SOCKET)` and
`BleakClient(address, backend=AirClient, air=SOCKET)`.

The host's own bumble Device joins the air through HCI (a controller of its own in the air), so
the production bleak code path (scanner callbacks, BLEDevice/AdvertisementData, GATT discovery,
write with response, notifications, MTU) runs unchanged against virtual tokens. The socket comes
from the `air=` keyword or the TOKENTOOL_AIR environment variable.
"""
from __future__ import annotations

import os
import uuid as uuid_module
from typing import Any

from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.client import BaseBleakClient
from bleak.backends.descriptor import BleakGATTDescriptor
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData, BaseBleakScanner
from bleak.backends.service import BleakGATTService, BleakGATTServiceCollection
from bleak.exc import BleakError
from bumble.core import AdvertisingData, PhysicalTransport
from bumble.device import Connection, Device, Peer
from bumble.transport.common import Transport
from bumble.hci import Address

from host_tools.air.client import open_air_device

_PROPERTY_NAMES = [
    (0x01, "broadcast"),
    (0x02, "read"),
    (0x04, "write-without-response"),
    (0x08, "write"),
    (0x10, "notify"),
    (0x20, "indicate"),
    (0x40, "authenticated-signed-writes"),
    (0x80, "extended-properties"),
]


def _air_socket(kwargs: dict[str, Any]) -> str:
    path = kwargs.get("air") or os.environ.get("TOKENTOOL_AIR")
    if not path:
        raise BleakError("no virtual air: pass air=SOCKET or set TOKENTOOL_AIR")
    return str(path)


def _uuid_text(uuid: Any) -> str:
    """bleak's spelling of a UUID: 128-bit, lower case, dashed (16-bit ones expanded)."""
    return str(uuid_module.UUID(bytes=bytes(reversed(uuid.uuid_128_bytes))))


def _uuid_from_le(raw: bytes) -> str:
    if len(raw) == 2:
        return f"0000{int.from_bytes(raw, 'little'):04x}-0000-1000-8000-00805f9b34fb"
    if len(raw) == 4:
        return f"{int.from_bytes(raw, 'little'):08x}-0000-1000-8000-00805f9b34fb"
    return str(uuid_module.UUID(bytes=bytes(reversed(raw))))


def advertisement_data(advertisement) -> AdvertisementData:
    """bleak's view of one report, decoded defensively from bumble's AD structures: anyone can
    advertise anything, and a malformed field is skipped (a bad name is decoded with
    replacement characters), never raised into the scanner."""
    name = None
    uuids: list[str] = []
    service_data: dict[str, bytes] = {}
    manufacturer: dict[int, bytes] = {}
    tx_power = None
    widths = {0x02: 2, 0x03: 2, 0x04: 4, 0x05: 4, 0x06: 16, 0x07: 16}
    for ad_type, value in advertisement.data.ad_structures:
        value = bytes(value)
        if ad_type in (AdvertisingData.COMPLETE_LOCAL_NAME, AdvertisingData.SHORTENED_LOCAL_NAME):
            if name is None or ad_type == AdvertisingData.COMPLETE_LOCAL_NAME:
                name = value.decode("utf-8", "replace")
        elif ad_type in widths:
            width = widths[ad_type]
            uuids += [_uuid_from_le(value[i : i + width]) for i in range(0, len(value) - width + 1, width)]
        elif ad_type == AdvertisingData.SERVICE_DATA_16_BIT_UUID and len(value) >= 2:
            service_data[_uuid_from_le(value[:2])] = value[2:]
        elif ad_type == AdvertisingData.SERVICE_DATA_128_BIT_UUID and len(value) >= 16:
            service_data[_uuid_from_le(value[:16])] = value[16:]
        elif ad_type == AdvertisingData.MANUFACTURER_SPECIFIC_DATA and len(value) >= 2:
            manufacturer[int.from_bytes(value[:2], "little")] = value[2:]
        elif ad_type == AdvertisingData.TX_POWER_LEVEL and len(value) == 1:
            tx_power = int.from_bytes(value, "little", signed=True)
    return AdvertisementData(
        local_name=name,
        manufacturer_data=manufacturer,
        service_data=service_data,
        service_uuids=uuids,
        tx_power=tx_power,
        rssi=advertisement.rssi,
        platform_data=(advertisement,),
    )


class AirScanner(BaseBleakScanner):
    def __init__(self, detection_callback, service_uuids, scanning_mode="active", **kwargs: Any) -> None:
        super().__init__(detection_callback, service_uuids)
        self._air = _air_socket(kwargs)
        self._active = scanning_mode != "passive"
        self._device: Device | None = None
        self._transport: Transport | None = None

    async def start(self) -> None:
        self.seen_devices = {}
        device, self._transport = await open_air_device(self._air, "bleak-scanner")
        self._device = device
        device.on("advertisement", self._on_advertisement)
        await device.start_scanning(legacy=True, active=self._active, filter_duplicates=False)

    async def stop(self) -> None:
        if self._device is not None:
            try:
                await self._device.stop_scanning(legacy=True)
            finally:
                if self._transport is not None:
                    await self._transport.close()
                self._device = self._transport = None

    def _on_advertisement(self, advertisement) -> None:
        adv = advertisement_data(advertisement)
        if not self.is_allowed_uuid(adv.service_uuids):
            return
        address = str(advertisement.address).split("/")[0]
        device = self.create_or_update_device(address, address, adv.local_name, advertisement, adv)
        self.call_detection_callbacks(device, adv)


class AirClient(BaseBleakClient):
    def __init__(self, address_or_ble_device: BLEDevice | str, **kwargs: Any) -> None:
        super().__init__(
            address_or_ble_device,
            disconnected_callback=kwargs.pop("disconnected_callback", None),
            timeout=kwargs.pop("timeout", 10.0),
        )
        self._air = _air_socket(kwargs)
        self._device: Device | None = None
        self._transport: Transport | None = None
        self._connection: Connection | None = None
        self._peer: Peer | None = None
        self._proxies: dict[int, Any] = {}

    @property
    def name(self) -> str:
        return self.address

    @property
    def mtu_size(self) -> int:
        return self._connection.att_mtu if self._connection is not None else 23

    @property
    def is_connected(self) -> bool:
        return self._connection is not None

    async def connect(self, pair: bool = False, **kwargs: Any) -> None:
        import asyncio

        device, transport = await open_air_device(self._air, "bleak-client")
        self._device, self._transport = device, transport
        try:
            target = Address(self.address, Address.RANDOM_DEVICE_ADDRESS)
            connection = await device.connect(
                target, transport=PhysicalTransport.LE, timeout=kwargs.get("timeout", self._timeout)
            )
        except (asyncio.TimeoutError, Exception) as error:
            await transport.close()
            self._device = self._transport = None
            raise BleakError(f"could not connect to {self.address}: {error or type(error).__name__}") from None
        self._connection = connection
        connection.on("disconnection", self._on_disconnection)
        self._peer = Peer(connection)
        await self._peer.request_mtu(517)
        await self._discover()

    def _on_disconnection(self, reason) -> None:
        self._connection = None
        if self._transport is not None:  # leave the air: this controller has nothing left to do
            import asyncio

            transport, self._device, self._transport = self._transport, None, None
            asyncio.get_running_loop().create_task(transport.close())
        if self._disconnected_callback is not None:
            self._disconnected_callback()

    async def _discover(self) -> None:
        assert self._peer is not None
        collection = BleakGATTServiceCollection()
        await self._peer.discover_services()
        for service in self._peer.services:
            await service.discover_characteristics()
            bleak_service = BleakGATTService(service, service.handle, _uuid_text(service.uuid))
            collection.add_service(bleak_service)
            for characteristic in service.characteristics:
                await characteristic.discover_descriptors()
                properties = [name for bit, name in _PROPERTY_NAMES if characteristic.properties & bit]
                bleak_char = BleakGATTCharacteristic(
                    characteristic,
                    characteristic.handle,
                    _uuid_text(characteristic.uuid),
                    properties,  # type: ignore[arg-type]
                    lambda: self.mtu_size - 3,
                    bleak_service,
                )
                collection.add_characteristic(bleak_char)
                self._proxies[characteristic.handle] = characteristic
                for descriptor in characteristic.descriptors:
                    collection.add_descriptor(
                        BleakGATTDescriptor(descriptor, descriptor.handle, _uuid_text(descriptor.type), bleak_char)
                    )
        self.services = collection

    async def disconnect(self) -> None:
        if self._connection is not None:
            try:
                await self._connection.disconnect()
            except Exception:  # noqa: BLE001 - the link may already be gone
                pass
        self._connection = None
        if self._transport is not None:
            await self._transport.close()
            self._device = self._transport = None

    async def pair(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError("tokens do not pair: the sync protocol authenticates itself")

    async def unpair(self) -> None:
        raise NotImplementedError("tokens do not pair")

    def _proxy(self, characteristic: BleakGATTCharacteristic):
        if self._connection is None:
            raise BleakError(f"not connected to {self.address}")
        return self._proxies[characteristic.handle]

    async def read_gatt_char(self, characteristic: BleakGATTCharacteristic, **kwargs: Any) -> bytearray:
        return bytearray(await self._proxy(characteristic).read_value())

    async def read_gatt_descriptor(self, descriptor: BleakGATTDescriptor, **kwargs: Any) -> bytearray:
        return bytearray(await descriptor.obj.read_value())

    async def write_gatt_char(self, characteristic: BleakGATTCharacteristic, data, response: bool) -> None:
        await self._proxy(characteristic).write_value(bytes(data), with_response=response)

    async def write_gatt_descriptor(self, descriptor: BleakGATTDescriptor, data) -> None:
        await descriptor.obj.write_value(bytes(data), with_response=True)

    async def start_notify(self, characteristic: BleakGATTCharacteristic, callback, **kwargs: Any) -> None:
        await self._proxy(characteristic).subscribe(lambda value: callback(bytearray(value)))

    async def stop_notify(self, characteristic: BleakGATTCharacteristic) -> None:
        await self._proxy(characteristic).unsubscribe()
