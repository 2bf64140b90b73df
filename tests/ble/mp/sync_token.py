# A virtual token for BLE sync tests: the real app (tokenfw.app.Token) with its sync protocol on
# the console (stdin/stdout: a pty the test opens as a serial port) and on the BLE GATT service
# (tokenfw.ble_sync) in the virtual air, a sync window open, and RECORDS encounters in its log.
#
#   micropython sync_token.py NAME AIR_SOCKET ROOT RECORDS START_S HOST_EPOCH_S TIME_SCALE [CONTENT]
#
# The log is a function of CONTENT (default NAME) and START_S only, so two tokens given the same
# CONTENT hold the very same records.
import json
import select
import sys

import bluetooth
from air_board import Quiet, Rtc
from tokenfw import records
from tokenfw.app import Token
from tokenfw.radio import Radio

class Console:
    def __init__(self, scale):
        self.scale = scale
        self.stdin = sys.stdin.buffer
        self.stdout = sys.stdout.buffer
        self.poll = select.poll()
        self.poll.register(self.stdin, select.POLLIN)
        self.poll.register(bluetooth.poll_object(), select.POLLIN)
        self.stdin_poll = select.poll()
        self.stdin_poll.register(self.stdin, select.POLLIN)

    def read_available(self):
        data = b""
        while len(data) < 256 and self.stdin_poll.poll(0):
            byte = self.stdin.read(1)
            if not byte:
                break
            data += byte
        return data

    def write(self, data):
        self.stdout.write(data)

    def wait(self, timeout_ms):
        self.poll.poll(max(0, int(timeout_ms / self.scale)))
        bluetooth.service()


class Board:
    def __init__(self, name, socket_path, start_s, host_epoch_s, scale):
        bluetooth.attach(socket_path, name)
        self.rtc = Rtc(start_s, host_epoch_s, scale)
        self.radio = Radio(self.rtc.ticks_ms)
        self.led = self.button = self.battery = Quiet()
        self.console = Console(scale)


def main():
    name, socket_path, root = sys.argv[1:4]
    count = int(sys.argv[4])
    start_s, host_epoch_s, scale = [float(v) for v in sys.argv[5:8]]
    content = sys.argv[8] if len(sys.argv) > 8 else name
    try:
        import os

        os.mkdir(root)
    except OSError:
        pass
    with open(root + "/config.json", "w") as f:
        json.dump({"serial": "TT-" + name.upper(), "role": "wearable", "identity": "private",
                   "auth_key": "00" * 32}, f)
    board = Board(name, socket_path, start_s, host_epoch_s, scale)
    token = Token(board, root)  # the app registers the BLE sync service itself
    token.clock.set(int(board.rtc.world()))
    if token.store.next_seq == 1:
        first = int(start_s) - 3 * count
        for i in range(count):
            rpi = (i.to_bytes(4, "little") + content.encode()) * 4
            enc = records.Encounter(rpi[:16], bytes((i & 255, 1, 2, 3)), first + 3 * i, 60 + i % 500,
                                    1 + i % 9, -40 - i % 50, -50 - i % 40, 0)
            token.store.append(enc)
        token.store.commit()
    token.ble_sync.open_window(token.clock.now(), 3600)
    token.run()


main()
