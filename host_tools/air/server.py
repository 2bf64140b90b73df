"""The virtual air: one bumble controller per device on a shared link, radio timing in token time.

Every device that joins (a virtual token through its `bluetooth` module, or a host tool through
HCI) gets its own bumble `Controller` on one `LocalLink`. Advertising data set over HCI, scan
reports, connections, ATT/GATT all pass through bumble, so a real BLE host stack builds and
parses every packet the firmware sends.

What bumble's controller does not model, the air does:
- Timing in *token time*: the air's clock runs `time_scale` times faster than the host's, so a
  test can live through hours of token time in minutes. Advertising is not driven by a timer per
  device (which could not keep up at high scales); instead, every tick the air counts how many
  advertising events each advertiser sent during the token-time each listener was scanning
  (interval, scan duty cycle) and delivers that many PDUs.
- Signal strength: each delivered PDU gets an RSSI from the scenario's path-loss model; a PDU
  below sensitivity is lost.
- Non-connectable advertising (ADV_NONCONN_IND), absent from bumble's legacy advertiser.
- The rule that a controller refuses a new random address while advertising or scanning.
"""
from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import random
import struct
import time
from typing import Any

from bumble import gatt, hci, ll
from bumble.controller import Controller, LegacyAdvertiser
from bumble.device import Device
from bumble.host import Host
from bumble.link import LocalLink
from bumble.transport.common import AsyncPipeSink, PacketParser

from host_tools.air import protocol as p
from host_tools.air.model import Scenario

logger = logging.getLogger("tokentool.air")

_EVT = hci.HCI_LE_Advertising_Report_Event.EventType
_ADV_IND = 0x00
_ADV_SCAN_IND = 0x02
_ADV_NONCONN_IND = 0x03
_MAX_PDUS_PER_PAIR_PER_TICK = 4000  # bounds the air's work when a tick covers hours of token time
_NOTIFY_TIMEOUT_S = 2.0


class AirAdvertiser(LegacyAdvertiser):
    """bumble's legacy advertiser without its own timer: the air decides when PDUs go out."""

    def start(self) -> None:
        self.enabled = True

    def stop(self) -> None:
        self.enabled = False

    @property
    def interval_s(self) -> float:
        units = self.advertising_interval_min or 0x0800  # HCI default 1.28 s
        return units * 0.625 / 1000.0

    def pdu(self) -> ll.AdvertisingPdu | None:
        if not self.enabled:
            return None
        if self.advertising_type == _ADV_IND:
            return ll.AdvInd(advertiser_address=self.address, data=bytes(self.advertising_data))
        if self.advertising_type in (_ADV_SCAN_IND, _ADV_NONCONN_IND):
            pdu = ll.AdvNonConnInd(advertiser_address=self.address, data=bytes(self.advertising_data))
            pdu.scannable = self.advertising_type == _ADV_SCAN_IND  # type: ignore[attr-defined]
            return pdu
        return None  # directed advertising is not used by anything here


class AirController(Controller):
    def __init__(self, air: "Air", name: str) -> None:
        super().__init__(name, link=air.link)
        # Legacy commands only: what the token firmware uses, and bumble's legacy reports.
        self.le_features = self.le_features & ~hci.LeFeatureMask.LE_EXTENDED_ADVERTISING
        self.le_legacy_advertiser: AirAdvertiser = AirAdvertiser(self)
        self.air = air
        self.device_name = name
        self.listen_since: float | None = None  # token time scanning started
        self.listen_until: float | None = None  # token time a token's scan window ends
        self.delivered = 0
        self.lost = 0

    # -- HCI commands the air refines ---------------------------------------------------
    def on_hci_le_set_random_address_command(self, command):  # type: ignore[override]
        if self.le_legacy_advertiser.enabled or self.le_scan_enable:
            return hci.HCI_StatusReturnParameters(hci.HCI_ErrorCode.COMMAND_DISALLOWED_ERROR)
        return super().on_hci_le_set_random_address_command(command)

    def on_hci_le_set_scan_enable_command(self, command):  # type: ignore[override]
        was = self.le_scan_enable
        result = super().on_hci_le_set_scan_enable_command(command)
        if self.le_scan_enable and not was:
            self.listen_since = self.air.now()
        elif not self.le_scan_enable:
            self.listen_since = None
            self.listen_until = None
        return result

    def on_hci_le_create_connection_command(self, command):  # type: ignore[override]
        super().on_hci_le_create_connection_command(command)
        if self.pending_le_connection is not None and self.listen_since is None:
            self.listen_since = self.air.now()

    # -- PDUs from the air ----------------------------------------------------------------
    @property
    def listening(self) -> bool:
        return bool(self.le_scan_enable) or self.pending_le_connection is not None

    @property
    def scan_duty(self) -> float:
        if not self.le_scan_enable:
            return 1.0  # an initiator listens continuously
        interval = self.le_scan_interval or 1
        return min(1.0, self.le_scan_window / interval)

    def on_ll_advertising_pdu(self, packet: ll.AdvertisingPdu) -> None:
        # The link only broadcasts connection requests; advertising PDUs come via receive().
        if isinstance(packet, ll.ConnectInd):
            self.on_le_connect_ind(packet)

    def receive(self, pdu: ll.AdvertisingPdu, rssi: int, scan_response: bytes) -> None:
        address = pdu.advertiser_address  # type: ignore[attr-defined]
        connectable = isinstance(pdu, ll.AdvInd)
        if self.le_scan_enable:
            if connectable:
                event_type = _EVT.ADV_IND
            elif getattr(pdu, "scannable", False):
                event_type = _EVT.ADV_SCAN_IND
            else:
                event_type = _EVT.ADV_NONCONN_IND
            reports = [
                hci.HCI_LE_Advertising_Report_Event.Report(
                    event_type=event_type,
                    address_type=address.address_type,
                    address=address,
                    data=pdu.data,  # type: ignore[attr-defined]
                    rssi=rssi,
                )
            ]
            if self.le_scan_type == 1 and event_type in (_EVT.ADV_IND, _EVT.ADV_SCAN_IND):
                reports.append(
                    hci.HCI_LE_Advertising_Report_Event.Report(
                        event_type=_EVT.SCAN_RSP,
                        address_type=address.address_type,
                        address=address,
                        data=scan_response,
                        rssi=rssi,
                    )
                )
            for report in reports:
                self.send_hci_packet(hci.HCI_LE_Advertising_Report_Event([report]))
        pending = self.pending_le_connection
        if connectable and pending is not None and pending.peer_address == address:
            self.create_le_connection(address)

    def inject_report(self, address: hci.Address, event_type: int, data: bytes, rssi: int) -> None:
        """Deliver a report whose data no legal advertiser could send (fuzzing, bursts)."""
        if self.le_scan_enable:
            report = hci.HCI_LE_Advertising_Report_Event.Report(
                event_type=event_type, address_type=address.address_type, address=address, data=data, rssi=rssi
            )
            self.send_hci_packet(hci.HCI_LE_Advertising_Report_Event([report]))


class _StreamSink:
    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer

    def on_packet(self, packet: bytes) -> None:
        if not self.writer.is_closing():
            self.writer.write(packet)


def _random_static_address(rng: random.Random) -> hci.Address:
    raw = bytearray(rng.getrandbits(8) for _ in range(6))
    raw[5] |= 0xC0  # random static: two top bits set (little-endian byte 5 is the MSB)
    return hci.Address(bytes(raw), hci.Address.RANDOM_DEVICE_ADDRESS)


def _display_bytes(address: hci.Address) -> bytes:
    return bytes(reversed(address.address_bytes))


class TokenDevice(Device):
    """The host stack the air runs on behalf of a virtual token (a token has no HCI of its
    own in MicroPython's API: NimBLE is inside the firmware image)."""

    session: "TokenSession"

    def on_advertising_report(self, report) -> None:  # type: ignore[override]
        # Forward each report as NimBLE hands it to MicroPython: raw data, even malformed.
        self.session.on_report(report)


class TokenSession:
    def __init__(self, air: "Air", name: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.air = air
        self.name = name
        self.reader = reader
        self.writer = writer
        self.controller = AirController(air, name)
        host = Host(self.controller, AsyncPipeSink(self.controller))
        self.device = TokenDevice(name=name, address=_random_static_address(air.rng), host=host)
        self.device.session = self
        self.scan_until: float | None = None
        self.characteristics: dict[int, gatt.Characteristic] = {}
        self.values: dict[int, bytes] = {}
        self.connections: dict[int, Any] = {}
        self.reports_sent = 0
        self.device.on("connection", self._on_connection)

    # -- frames ---------------------------------------------------------------------------
    def send(self, kind: int, body: bytes = b"") -> None:
        if not self.writer.is_closing():
            self.writer.write(struct.pack("<HB", len(body) + 1, kind) + body)

    def status(self, kind: int, error: int = 0) -> None:
        self.send(p.STATUS, struct.pack("<Bh", kind, error))

    def on_report(self, report) -> None:
        if self.scan_until is None and not self.controller.le_scan_enable:
            return
        address = report.address
        body = struct.pack(
            "<B6sBb", address.address_type & 1, _display_bytes(address), int(report.event_type), int(report.rssi)
        )
        self.reports_sent += 1
        self.send(p.SCAN_RESULT, body + bytes(report.data))

    async def run(self) -> None:
        await self.device.power_on()
        self.send(p.WELCOME, json.dumps({"time_scale": self.air.scenario.time_scale}).encode())
        while True:
            header = await self.reader.readexactly(2)
            (length,) = struct.unpack("<H", header)
            if not 1 <= length <= p.MAX_FRAME:
                raise ValueError(f"token {self.name} sent a frame of {length} bytes")
            frame = await self.reader.readexactly(length)
            await self.handle(frame[0], frame[1:])
            await self.writer.drain()

    async def handle(self, kind: int, body: bytes) -> None:
        try:
            if kind == p.REGISTER:
                self.send(p.REGISTERED, json.dumps(self.register(json.loads(body))).encode())
                return
            error = await self._command(kind, body)
        except (ValueError, struct.error, KeyError) as exc:
            logger.warning("token %s: bad command 0x%02x: %s", self.name, kind, exc)
            error = p.EINVAL
        self.status(kind, error)

    async def _command(self, kind: int, body: bytes) -> int:
        device = self.device
        if kind == p.ACTIVE:
            return 0
        if kind == p.SET_ADDR:
            addr_type, raw = struct.unpack("<B6s", body)
            address = hci.Address(bytes(reversed(raw)), hci.Address.RANDOM_DEVICE_ADDRESS)
            try:
                await device.send_sync_command(hci.HCI_LE_Set_Random_Address_Command(random_address=address))
            except hci.HCI_Error:
                return p.EBUSY
            device.random_address = address
            return 0
        if kind == p.ADVERTISE:
            interval_us, connectable, n = struct.unpack_from("<IBB", body)
            adv, resp = body[6 : 6 + n], body[6 + n :]
            if device.is_advertising:
                await device.stop_advertising()
            if interval_us == 0:
                return 0
            if len(adv) > 31 or len(resp) > 31:
                return p.EINVAL
            from bumble.device import AdvertisingType

            kind_ = (
                AdvertisingType.UNDIRECTED_CONNECTABLE_SCANNABLE
                if connectable
                else (AdvertisingType.UNDIRECTED_SCANNABLE if resp else AdvertisingType.UNDIRECTED)
            )
            interval_ms = max(20.0, min(10240.0, interval_us / 1000.0))
            await device.start_advertising(
                advertising_type=kind_,
                advertising_data=adv,
                scan_response_data=resp,
                advertising_interval_min=interval_ms,
                advertising_interval_max=interval_ms,
            )
            return 0
        if kind == p.SCAN:
            duration_ms, interval_us, window_us, active = struct.unpack("<iIIB", body)
            if self.controller.le_scan_enable:
                await device.stop_scanning(legacy=True)
                self.scan_until = None
                self.send(p.SCAN_DONE)
            if duration_ms < 0:
                return 0
            interval_ms = max(2.5, min(10240.0, interval_us / 1000.0))
            window_ms = max(2.5, min(interval_ms, window_us / 1000.0))
            await device.start_scanning(
                legacy=True, active=bool(active), scan_interval=interval_ms, scan_window=window_ms
            )
            self.scan_until = self.air.now() + duration_ms / 1000.0 if duration_ms > 0 else math.inf
            self.controller.listen_until = self.scan_until
            return 0
        if kind == p.NOTIFY:
            conn, handle, indicate = struct.unpack_from("<HHB", body)
            connection = self.connections.get(conn)
            characteristic = self.characteristics.get(handle)
            if connection is None:
                return p.ENOTCONN
            if characteristic is None:
                return p.EINVAL
            data = body[5:]
            send = device.indicate_subscriber if indicate else device.notify_subscriber
            try:
                # A link that is going down never completes the send: answer as NimBLE does.
                await asyncio.wait_for(send(connection, characteristic, data, force=True), _NOTIFY_TIMEOUT_S)
            except (asyncio.TimeoutError, hci.HCI_Error, ConnectionError):
                return p.ENOTCONN
            return 0 if conn in self.connections else p.ENOTCONN
        if kind == p.SET_VALUE:
            (handle,) = struct.unpack_from("<H", body)
            if handle not in self.characteristics:
                return p.EINVAL
            self.values[handle] = body[2:]
            return 0
        if kind == p.DISCONNECT:
            (conn,) = struct.unpack("<H", body)
            connection = self.connections.get(conn)
            if connection is None:
                return p.ENOTCONN
            await connection.disconnect()
            return 0
        return p.EINVAL

    async def after_tick(self, now: float) -> None:
        if self.scan_until is not None and now >= self.scan_until:
            self.scan_until = None
            await self.device.stop_scanning(legacy=True)
            self.send(p.SCAN_DONE)

    # -- GATT -----------------------------------------------------------------------------
    def register(self, services_spec: list) -> list[list[int]]:
        services = []
        characteristics_per_service = []
        for service_uuid, chars_spec in services_spec:
            characteristics = []
            for char_uuid, flags in chars_spec:
                characteristics.append(self._characteristic(str(char_uuid), int(flags)))
            services.append(gatt.Service(str(service_uuid), characteristics))
            characteristics_per_service.append(characteristics)
        self.device.add_services(services)
        handles = []
        for characteristics in characteristics_per_service:
            row = []
            for characteristic in characteristics:
                self.characteristics[characteristic.handle] = characteristic
                self.values.setdefault(characteristic.handle, b"")
                row.append(characteristic.handle)
            handles.append(row)
        return handles

    def _characteristic(self, uuid: str, flags: int) -> gatt.Characteristic:
        holder: dict[str, gatt.Characteristic] = {}

        def read(connection):
            return self.values.get(holder["c"].handle, b"")

        def write(connection, value):
            handle = holder["c"].handle
            self.values[handle] = bytes(value)
            self.send(p.GATTS_WRITE, struct.pack("<HH", connection.handle, handle) + bytes(value))

        permissions = gatt.Characteristic.Permissions(0)
        if flags & 0x02:
            permissions |= gatt.Characteristic.Permissions.READABLE
        if flags & 0x0C:
            permissions |= gatt.Characteristic.Permissions.WRITEABLE
        characteristic = gatt.Characteristic(
            uuid,
            gatt.Characteristic.Properties(flags & 0xFF),
            permissions,
            gatt.CharacteristicValue(read=read, write=write),
        )
        holder["c"] = characteristic
        return characteristic

    def _on_connection(self, connection) -> None:
        conn = connection.handle
        self.connections[conn] = connection
        peer = connection.peer_address
        addr = struct.pack("<HB6s", conn, peer.address_type & 1, _display_bytes(peer))
        self.send(p.CENTRAL_CONNECT, addr)

        def on_disconnection(reason) -> None:
            self.connections.pop(conn, None)
            self.send(p.CENTRAL_DISCONNECT, addr)

        def on_mtu() -> None:
            self.send(p.MTU_EXCHANGED, struct.pack("<HH", conn, connection.att_mtu))

        connection.on("disconnection", on_disconnection)
        connection.on("connection_att_mtu_update", on_mtu)

    def close(self) -> None:
        self.air.forget(self.controller)


class Air:
    def __init__(self, scenario: Scenario, socket_path: str, seed: int | None = None, tick_s: float = 0.02):
        self.scenario = scenario
        self.socket_path = socket_path
        self.link = LocalLink()
        self.rng = random.Random(seed)
        self.tick_s = tick_s
        self._t0 = time.monotonic()
        self.controllers: list[AirController] = []
        self.sessions: list[TokenSession] = []
        self._server: asyncio.base_events.Server | None = None
        self.delivered = 0
        self.lost = 0

    def now(self) -> float:
        """Token seconds since the air started."""
        return (time.monotonic() - self._t0) * self.scenario.time_scale

    def forget(self, controller: AirController) -> None:
        if controller in self.controllers:
            self.controllers.remove(controller)
        if controller in self.link.controllers:
            self.link.remove_controller(controller)

    def new_controller(self, name: str) -> AirController:
        controller = AirController(self, name)
        self.controllers.append(controller)
        return controller

    async def serve(self) -> None:
        if os.path.exists(self.socket_path):
            os.unlink(self.socket_path)
        self._server = await asyncio.start_unix_server(self._accept, path=self.socket_path)
        ticker = asyncio.create_task(self._tick_forever())
        try:
            await self._server.serve_forever()
        finally:
            ticker.cancel()

    # -- clients --------------------------------------------------------------------------
    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            magic = await reader.readexactly(4)
            if magic == p.TOKEN_MAGIC:
                await self._token_client(reader, writer)
            elif magic == p.HCI_MAGIC:
                await self._hci_client(reader, writer)
            elif magic == p.CONTROL_MAGIC:
                await self._control_client(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        except Exception:  # one bad client must not take the air down
            logger.exception("air client failed")
        finally:
            writer.close()

    async def _token_client(self, reader, writer) -> None:
        (length,) = struct.unpack("<H", await reader.readexactly(2))
        frame = await reader.readexactly(length)
        if frame[0] != p.HELLO:
            return
        name = str(json.loads(frame[1:]).get("name", "token"))
        session = TokenSession(self, name, reader, writer)
        self.controllers.append(session.controller)
        self.sessions.append(session)
        try:
            await session.run()
        finally:
            self.sessions.remove(session)
            session.close()

    async def _hci_client(self, reader, writer) -> None:
        (n,) = await reader.readexactly(1)
        name = (await reader.readexactly(n)).decode("utf-8", "replace")
        controller = self.new_controller(name)
        controller.host = _StreamSink(writer)
        parser = PacketParser(controller)
        try:
            while data := await reader.read(65536):
                parser.feed_data(data)
        finally:
            for connection in list(controller.le_connections.values()):
                try:
                    controller.on_le_disconnected(connection, hci.HCI_ErrorCode.CONNECTION_TIMEOUT_ERROR)
                except Exception:  # noqa: BLE001 - best effort: the peer hears a timeout
                    pass
            self.forget(controller)

    async def _control_client(self, reader, writer) -> None:
        while line := await reader.readline():
            try:
                answer = self.control(json.loads(line))
            except (ValueError, KeyError, TypeError) as error:
                answer = {"error": str(error)}
            writer.write(json.dumps(answer).encode() + b"\n")
            await writer.drain()

    def control(self, request: dict) -> dict:
        op = request["op"]
        if op == "status":
            return {
                "now_s": self.now(),
                "time_scale": self.scenario.time_scale,
                "delivered": self.delivered,
                "lost": self.lost,
                "devices": [
                    {
                        "name": c.device_name,
                        "address": str(c.random_address),
                        "advertising": c.le_legacy_advertiser.enabled,
                        "scanning": bool(c.le_scan_enable),
                        "delivered": c.delivered,
                    }
                    for c in self.controllers
                ],
            }
        if op == "move":
            self.scenario.move(request["name"], track=request.get("track"), at=request.get("at"))
            return {"ok": True}
        if op == "inject":
            # Reports no advertiser could legally send: fuzzed or oversized data, bursts.
            target = self._named(request["to"])
            address = hci.Address(bytes.fromhex(request.get("address", "c0ffee000001")), hci.Address.RANDOM_DEVICE_ADDRESS)
            data = bytes.fromhex(request["data"])
            if len(data) > 255:
                raise ValueError("an HCI advertising report holds at most 255 bytes")
            count = int(request.get("count", 1))
            for _ in range(max(0, min(count, 100_000))):
                target.inject_report(address, int(request.get("event_type", _ADV_NONCONN_IND)), data, int(request.get("rssi", -60)))
            return {"ok": True, "scanning": bool(target.le_scan_enable)}
        if op == "drop":
            # The link to a token breaks (a wall, a pocket, a host that walked away).
            session = next((s for s in self.sessions if s.name == request["name"]), None)
            if session is None:
                raise ValueError(f"no virtual token named {request['name']!r} in the air")
            dropped = list(session.connections.values())
            for connection in dropped:
                asyncio.get_running_loop().create_task(connection.disconnect())
            return {"ok": True, "dropped": len(dropped)}
        raise ValueError(f"unknown op {op!r}")

    def _named(self, name: str) -> AirController:
        for controller in self.controllers:
            if controller.device_name == name:
                return controller
        raise ValueError(f"no device named {name!r} in the air")

    # -- the radio ------------------------------------------------------------------------
    async def _tick_forever(self) -> None:
        last = self.now()
        while True:
            await asyncio.sleep(self.tick_s)
            now = self.now()
            self.tick(last, now)
            last = now
            for session in list(self.sessions):
                try:
                    await session.after_tick(now)
                except Exception:  # noqa: BLE001 - a dying session is cleaned up by its reader
                    logger.exception("session %s tick failed", session.name)

    def tick(self, last: float, now: float) -> None:
        loss = self.scenario.path_loss
        for listener in self.controllers:
            if not listener.listening or listener.listen_since is None:
                continue
            start = max(last, listener.listen_since)
            end = now if listener.listen_until is None else min(now, listener.listen_until)
            heard_s = (end - start) * listener.scan_duty
            if heard_s <= 0:
                continue
            for advertiser in self.controllers:
                if advertiser is listener:
                    continue
                pdu = advertiser.le_legacy_advertiser.pdu()
                if pdu is None:
                    continue
                if not listener.le_scan_enable and not isinstance(pdu, ll.AdvInd):
                    continue  # an initiator only reacts to connectable advertising
                expected = heard_s / advertiser.le_legacy_advertiser.interval_s
                count = int(expected) + (1 if self.rng.random() < expected - int(expected) else 0)
                count = min(count, _MAX_PDUS_PER_PAIR_PER_TICK)
                if count == 0:
                    continue
                placement = self.scenario.placement(advertiser.device_name)
                distance = self.scenario.distance_m(listener.device_name, advertiser.device_name, (start + end) / 2)
                scan_response = bytes(advertiser.le_legacy_advertiser.scan_response_data)
                for _ in range(count):
                    rssi = loss.sample(distance, self.rng, placement.tx_offset_db)
                    if rssi is None:
                        self.lost += 1
                        continue
                    self.delivered += 1
                    listener.delivered += 1
                    listener.receive(pdu, rssi, scan_response)
