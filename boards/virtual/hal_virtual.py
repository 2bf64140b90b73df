# The virtual token's hardware: the Board interface of hal_esp32, backed by the host.
#
# Everything that is not the console reaches the supervisor (host_tools/virtual/supervisor.py)
# over one unix socket with short text lines, one request, one answer:
#   hello                 -> ok START_S TIME_SCALE HOST_EPOCH_S RTC_OFFSET_S NAME
#   clock OFFSET_S        -> ok            (RTC set: kept across soft resets, lost at power-off)
#   adv HEX INTERVAL_MS   -> ok            (current advertisement, published to the air)
#   noadv                 -> ok
#   scan DURATION_MS      -> ok            (a scan window opens now, world time)
#   reports               -> HEX RSSI lines, then "."   (what the radio heard since last time)
#   led PATTERN           -> ok
#   button                -> ok 0|1
#   battery               -> ok MILLIVOLTS
#
# World time (shared by every token on one air) = START_S + (host time - HOST_EPOCH_S) x
# TIME_SCALE. The RTC reads world time + RTC_OFFSET_S; the offset lives in the supervisor, so a
# soft reset keeps the time (as an ESP32's RTC does) and a power cycle loses it.
#
# Edge cases: the supervisor gone (socket errors -> the radio goes quiet, nothing raises into
# the app loop), a flood of reports (the fixed ring buffer drops and counts), time scale > 1
# (sleeps and console waits shrink by the scale, so one token second stays one world second).
import os
import select
import struct
import sys
import time

try:
    from micropython import const
except ImportError:  # CPython
    def const(value):
        return value

_RING_SLOTS = const(32)
_TICKS_MASK = const(0x3FFFFFFF)
_CONSOLE_CHUNK = const(256)


class Link:
    """The socket to the supervisor; reconnects once when the supervisor restarted it."""

    def __init__(self, path):
        self.path = path
        self.sock = None

    def _connect(self):
        import socket

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
    def __init__(self, link, start_s, time_scale, host_epoch_s, offset_s):
        self.link = link
        self.start_s = start_s
        self.time_scale = time_scale
        self.host_epoch_s = host_epoch_s
        self.offset_s = offset_s

    def world(self):
        return self.start_s + (time.time() - self.host_epoch_s) * self.time_scale

    def seconds(self):
        return int(self.world() + self.offset_s)

    def set_seconds(self, seconds):
        self.offset_s = seconds - self.world()
        self.link.ask(b"clock %.3f" % self.offset_s)

    def ticks_ms(self):
        return int((time.time() - self.host_epoch_s) * self.time_scale * 1000) & _TICKS_MASK


class Radio:
    def __init__(self, link, rtc):
        self.link = link
        self.rtc = rtc
        self.scan_until = 0.0
        self.dropped = 0
        # Fixed ring buffer of (adv_data, rssi), as the ESP32 IRQ handler fills it.
        self._ring_data = [None] * _RING_SLOTS
        self._ring_rssi = [0] * _RING_SLOTS
        self._head = 0
        self._count = 0

    def advertise(self, payload, interval_ms):
        self.link.ask(b"adv " + bytes(payload).hex().encode() + b" %d" % interval_ms)

    def stop_advertising(self):
        self.link.ask(b"noadv")

    def start_scan(self, duration_ms):
        self.scan_until = self.rtc.world() + duration_ms / 1000
        self.link.ask(b"scan %d" % duration_ms)

    def scanning(self):
        return self.rtc.world() < self.scan_until

    def _push(self, data, rssi):
        if self._count == _RING_SLOTS:
            self.dropped += 1
            return
        slot = (self._head + self._count) % _RING_SLOTS
        self._ring_data[slot] = data
        self._ring_rssi[slot] = rssi
        self._count += 1

    def take_reports(self, callback):
        for line in self.link.lines(b"reports"):
            hex_data, _, rssi = line.partition(b" ")
            try:
                self._push(bytes.fromhex(hex_data.decode()), int(rssi))
            except ValueError:
                self.dropped += 1  # a garbled line from the air counts as lost
        while self._count:
            slot = self._head
            data = self._ring_data[slot]
            rssi = self._ring_rssi[slot]
            self._ring_data[slot] = None
            self._head = (self._head + 1) % _RING_SLOTS
            self._count -= 1
            callback(data, rssi)


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

    def __init__(self, time_scale):
        self.time_scale = time_scale
        self.stdin = sys.stdin.buffer
        self.stdout = sys.stdout.buffer
        self.poll = select.poll()
        self.poll.register(self.stdin, select.POLLIN)

    def read_available(self):
        data = b""
        while len(data) < _CONSOLE_CHUNK and self.poll.poll(0):
            byte = self.stdin.read(1)
            if not byte:
                break
            data += byte
        return data

    def write(self, data):
        self.stdout.write(data)

    def wait(self, timeout_ms):
        self.poll.poll(max(0, int(timeout_ms / self.time_scale)))


class Board:
    def __init__(self, board_config, socket_path):
        self.link = Link(socket_path)
        fields = self.link.ask(b"hello").split()
        if len(fields) < 6 or fields[0] != b"ok":
            raise OSError("virtual token supervisor did not answer on %s" % socket_path)
        start_s, time_scale, host_epoch_s, offset_s = [float(f) for f in fields[1:5]]
        self.name = fields[5].decode()
        self.config = board_config
        self.time_scale = time_scale
        battery = board_config.get("battery", {})
        self.rtc = Rtc(self.link, start_s, time_scale, host_epoch_s, offset_s)
        self.radio = Radio(self.link, self.rtc)
        self.led = Led(self.link)
        self.button = Button(self.link)
        self.battery = Battery(self.link, battery.get("empty_mv", 3300), battery.get("full_mv", 4200))
        self.console = Console(time_scale)

    def sleep_ms(self, ms):
        time.sleep_ms(int(ms / self.time_scale))


def open_board(board_config):
    path = os.getenv("VTOKEN_SOCKET")
    if not path:
        raise OSError("VTOKEN_SOCKET is not set: start the token with `tokentool virtual start`")
    return Board(board_config, path)
