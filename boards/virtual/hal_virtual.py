# The virtual token's hardware: the Board interface of hal_esp32, backed by the host.
#
# Everything that is not the console reaches the supervisor (host_tools/virtual/supervisor.py)
# over one unix socket with short text lines, one request, one answer:
#   hello                 -> ok START_S TIME_SCALE HOST_EPOCH_S RTC_OFFSET_S NAME
#   clock OFFSET_S        -> ok            (RTC set: kept across soft resets, lost at power-off)
#   adv HEX INTERVAL_MS   -> ok            (current advertisement, published to the air)
#   noadv                 -> ok
#   scan DURATION_MS      -> ok            (a scan window opens now, world time)
#   noscan                -> ok            (the scan window closes now)
#   reports               -> HEX RSSI lines, then "."   (what the radio heard since last time)
#   led PATTERN           -> ok
#   button                -> ok 0|1
#   battery               -> ok MILLIVOLTS
#   usb                   -> ok 0|1        (USB power: a host has the console port open)
#   sleep MS              -> ok            (the token deep-sleeps MS token milliseconds)
#
# World time (shared by every token on one air) = START_S + (host time - HOST_EPOCH_S) x
# TIME_SCALE. The RTC reads world time + RTC_OFFSET_S; the offset lives in the supervisor, so a
# soft reset keeps the time (as an ESP32's RTC does) and a power cycle loses it.
#
# The radio is the ESP32's own adapter (tokenfw.radio.Radio) over a stand-in for the few
# `bluetooth.BLE` calls it makes, so the virtual token runs the same ring buffer, address
# rotation and scan bookkeeping as the board.
#
# With TOKENTOOL_AIR set (the socket of a bumble virtual air, host_tools/air), the radio runs
# over the virtual `bluetooth` module instead (boards/virtual/bluetooth.py, on the flash image):
# advertisements, scans and the BLE sync service then go through a real BLE stack, and host
# tools reach the token with bleak. The air's time scale must match the token's.
#
# Deep sleep (Board.deep_sleep) cannot reset the unix port, so it emulates what an ESP32 keeps
# and loses: the radio goes off (the bumble device leaves the air), console input is lost (the
# UART is off), time passes at the world's scale, and the sleep ends at its time, on the button
# (ext0) or on USB power (ext1 on the VBUS sense pin). RAM is lost by contract: main.py builds a
# new Token, which finds only what it put in rtc_memory() (wake_memory()), the board adapters
# are opened afresh, and a power cut still loses everything.
#
# Edge cases: the supervisor gone (socket errors -> the radio goes quiet, nothing raises into
# the app loop), a flood of reports (the radio's fixed ring buffer drops and counts), time scale > 1
# (sleeps and console waits shrink by the scale, so one token second stays one world second).
import os
import select
import socket
import struct
import sys
import time

from tokenfw.radio import Radio

try:
    from micropython import const
except ImportError:  # CPython
    def const(value):
        return value

_TICKS_MASK = const(0x3FFFFFFF)
_CONSOLE_CHUNK = const(256)
_IRQ_SCAN_RESULT = const(5)
_IRQ_SCAN_DONE = const(6)
_ADDR_RANDOM = const(1)
_ADV_NONCONN_IND = const(3)
_PEER_ADDR = b"\xc0\x00\x00\x00\x00\x00"  # the stand-in air does not carry addresses
_SLEEP_POLL_MS = const(50)  # how often a sleeping token checks its wake pins (host time)
RTC_MEMORY_BYTES = const(2048)  # as machine.RTC().memory() on the ESP32 port


class Link:
    """The socket to the supervisor; reconnects once when the supervisor restarted it."""

    def __init__(self, path):
        self.path = path
        self.sock = None

    def _connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(struct.pack("H", socket.AF_UNIX) + self.path.encode() + b"\0")
        self.sock = s

    def ask(self, line):
        for attempt in (0, 1):
            try:
                if self.sock is None:
                    self._connect()
                self.sock.write(line + b"\n")
                answer = self.sock.readline()
                if answer:
                    return answer.rstrip(b"\n")
            except OSError:
                pass
            self.close()
        return b""

    def lines(self, line):
        """Ask, then collect answer lines up to ".". Yields nothing if the link is down."""
        first = self.ask(line)
        while first and first != b".":
            yield first
            try:
                first = self.sock.readline().rstrip(b"\n")
            except OSError:
                self.close()
                return

    def close(self):
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
        self.sock = None


class Rtc:
    """World time as the air defines it (host_tools/virtual/air.py, World): `time_scale` times
    faster than the host for the first `fast_for_s` world seconds (all when negative), 1x after."""

    def __init__(self, link, start_s, time_scale, host_epoch_s, offset_s, fast_for_s):
        self.link = link
        self.start_s = start_s
        self.time_scale = time_scale
        self.host_epoch_s = host_epoch_s
        self.offset_s = offset_s
        self.fast_for_s = fast_for_s

    def scale(self):
        """How many world seconds pass per host second now."""
        if self.fast_for_s < 0 or (time.time() - self.host_epoch_s) * self.time_scale <= self.fast_for_s:
            return self.time_scale
        return 1.0

    def world(self):
        elapsed = time.time() - self.host_epoch_s
        if self.fast_for_s < 0 or elapsed * self.time_scale <= self.fast_for_s:
            return self.start_s + elapsed * self.time_scale
        return self.start_s + self.fast_for_s + elapsed - self.fast_for_s / self.time_scale

    def seconds(self):
        return int(self.world() + self.offset_s)

    def set_seconds(self, seconds):
        self.offset_s = seconds - self.world()
        self.link.ask(b"clock %.3f" % self.offset_s)

    def ticks_ms(self):
        return int((self.world() - self.start_s) * 1000) & _TICKS_MASK

    def milliseconds(self):
        return int((self.world() + self.offset_s) * 1000)


class StandInBLE:
    """The part of MicroPython's `bluetooth.BLE` that tokenfw.radio uses, carried by the
    supervisor's stand-in air. Reports reach the IRQ handler when the radio is pumped (from the
    main loop's scanning() / take_reports() calls), the way NimBLE events reach it on an ESP32
    between two bytecodes. Replaced by a bumble-backed `bluetooth` module in the virtual air."""

    def __init__(self, link, rtc):
        self.link = link
        self.rtc = rtc
        self._handler = None
        self._active = False
        self._scan_until = None
        self._mac = bytes(6)

    def active(self, on=None):
        if on is not None:
            self._active = bool(on)
        return self._active

    def irq(self, handler):
        self._handler = handler

    def config(self, *names, **settings):
        if "addr_mode" in settings:
            mac = bytearray(os.urandom(6))
            mac[0] &= 0x3F  # a non-resolvable private address has its two top bits clear
            self._mac = bytes(mac)
        if names and names[0] == "mac":
            return (_ADDR_RANDOM, self._mac)
        return None

    def gap_advertise(self, interval_us, adv_data=None, resp_data=None, connectable=True):
        if interval_us is None:
            self.link.ask(b"noadv")
        else:
            self.link.ask(b"adv " + bytes(adv_data or b"").hex().encode() + b" %d" % (interval_us // 1000))

    def gap_scan(self, duration_ms, interval_us=1280000, window_us=11250, active=False):
        if duration_ms is None:
            self._scan_until = None
            self.link.ask(b"noscan")
            return
        self._scan_until = self.rtc.world() + duration_ms / 1000
        self.link.ask(b"scan %d" % duration_ms)

    def pump(self):
        """Deliver what the air carried since the last pump; SCAN_DONE once the window is over."""
        if self._scan_until is None or self._handler is None:
            return
        for line in self.link.lines(b"reports"):
            hex_data, _, rssi = line.partition(b" ")
            try:
                report = (_ADDR_RANDOM, _PEER_ADDR, _ADV_NONCONN_IND, int(rssi), bytes.fromhex(hex_data.decode()))
            except ValueError:
                continue  # a garbled line from the air is like a packet with a bad CRC
            self._handler(_IRQ_SCAN_RESULT, report)
        if self.rtc.world() >= self._scan_until:
            self._scan_until = None
            self._handler(_IRQ_SCAN_DONE, None)


class VirtualRadio(Radio):
    """tokenfw.radio.Radio (the ESP32's radio adapter) on the stand-in air."""

    def scanning(self):
        self._ble.pump()
        return Radio.scanning(self)

    def take_reports(self, callback):
        self._ble.pump()
        return Radio.take_reports(self, callback)


class Led:
    def __init__(self, link):
        self.link = link
        self.pattern = None

    def show(self, pattern):
        self.pattern = pattern
        self.link.ask(b"led " + str(pattern).encode())


class Button:
    def __init__(self, link):
        self.link = link

    def pressed(self):
        return self.link.ask(b"button") == b"ok 1"


class Battery:
    def __init__(self, link, empty_mv, full_mv):
        self.link = link
        self.empty_mv = empty_mv
        self.full_mv = full_mv

    def millivolts(self):
        answer = self.link.ask(b"battery")
        try:
            return int(answer.split()[1])
        except (IndexError, ValueError):
            return self.full_mv

    def percent(self):
        span = self.full_mv - self.empty_mv
        percent = (self.millivolts() - self.empty_mv) * 100 // span
        return max(0, min(100, percent))


class Console:
    """The USB console: stdin/stdout are the pty the supervisor bridges to the user's pty."""

    def __init__(self, scale, air=None):
        self.scale = scale  # callable: world seconds per host second now
        self.stdin = sys.stdin.buffer
        self.stdout = sys.stdout.buffer
        self.poll = select.poll()
        self.poll.register(self.stdin, select.POLLIN)
        self.stdin_poll = self.poll
        self.air = air  # the virtual `bluetooth` module when the token lives in the bumble air
        if air is not None:
            # Waiting also wakes for the air, whose events become IRQs here (on an ESP32 they
            # interrupt the wait by themselves).
            self.stdin_poll = select.poll()
            self.stdin_poll.register(self.stdin, select.POLLIN)
            self.poll.register(air.poll_object(), select.POLLIN)

    def read_available(self):
        data = b""
        while len(data) < _CONSOLE_CHUNK and self.stdin_poll.poll(0):
            byte = self.stdin.read(1)
            if not byte:
                break
            data += byte
        return data

    def write(self, data):
        self.stdout.write(data)

    def wait(self, timeout_ms):
        self.poll.poll(max(0, int(timeout_ms / self.scale())))
        if self.air is not None:
            self.air.service()


class Board:
    def __init__(self, board_config, socket_path):
        self._rtc_memory = None  # survives deep_sleep(), not a power cut (a new process)
        self._woke_from_sleep = False
        self._open(board_config, socket_path)

    def _open(self, board_config, socket_path):
        self.link = Link(socket_path)
        fields = self.link.ask(b"hello").split()
        if len(fields) < 7 or fields[0] != b"ok":
            raise OSError("virtual token supervisor did not answer on %s" % socket_path)
        start_s, time_scale, host_epoch_s, offset_s, fast_for_s = [float(f) for f in fields[1:6]]
        self.name = fields[6].decode()
        self.config = board_config
        battery = board_config.get("battery", {})
        self.rtc = Rtc(self.link, start_s, time_scale, host_epoch_s, offset_s, fast_for_s)
        air_socket = os.getenv("TOKENTOOL_AIR")
        air = None
        if air_socket:
            # The bumble virtual air (host_tools/air): the firmware's radio adapter over the
            # virtual `bluetooth` module, exactly as over NimBLE on an ESP32.
            import bluetooth

            bluetooth.attach(air_socket, self.name)
            self.radio = Radio(self.rtc.ticks_ms)
            air = bluetooth
            if abs(bluetooth.BLE().time_scale() - self.rtc.scale()) > 1e-6:
                print("hal_virtual: the air runs at %gx but this token at %gx; scan windows will be wrong"
                      % (bluetooth.BLE().time_scale(), self.rtc.scale()))
        else:
            self.radio = VirtualRadio(self.rtc.ticks_ms, ble=StandInBLE(self.link, self.rtc))
        self.led = Led(self.link)
        self.button = Button(self.link)
        self.battery = Battery(self.link, battery.get("empty_mv", 3300), battery.get("full_mv", 4200))
        self.console = Console(self.rtc.scale, air)

    def sleep_ms(self, ms):
        time.sleep_ms(int(ms / self.rtc.scale()))

    def usb_powered(self):
        return self.link.ask(b"usb") == b"ok 1"

    # -- deep sleep (see the module comment) ------------------------------------------------------
    def rtc_memory(self, data):
        if len(data) > RTC_MEMORY_BYTES:
            raise ValueError("RTC memory holds %d bytes" % RTC_MEMORY_BYTES)
        self._rtc_memory = bytes(data)

    def wake_memory(self):
        """What rtc_memory() held before the last deep sleep, after a wake from it; else None."""
        return self._rtc_memory if self._woke_from_sleep else None

    def deep_sleep(self, ms):
        self.radio.stop_scan()
        self.radio.stop_advertising()
        if self.console.air is not None:
            self.console.air.BLE().active(False)  # the controller is off: gone from the air
        self.link.ask(b"sleep %d" % ms)
        wake_at = self.rtc.world() + ms / 1000
        deaf = select.poll()
        deaf.register(self.console.stdin, select.POLLIN)
        while True:
            left_s = wake_at - self.rtc.world()
            if left_s <= 0 or self.button.pressed() or self.usb_powered():
                break
            if deaf.poll(max(1, min(_SLEEP_POLL_MS, int(left_s * 1000 / self.rtc.scale())))):
                self.console.stdin.read(1)  # the UART is off: what arrives now is lost
        self.link.close()
        self._open(self.config, self.link.path)
        self._woke_from_sleep = True


def open_board(board_config):
    path = os.getenv("VTOKEN_SOCKET")
    if not path:
        raise OSError("VTOKEN_SOCKET is not set: start the token with `tokentool virtual start`")
    return Board(board_config, path)
