# A virtual token for tests/ble: the real firmware app (tokenfw.app.Token) on a minimal board
# whose radio is tokenfw.radio over the virtual `bluetooth` module in the virtual air.
#
#   micropython -X heapsize=100K air_token.py NAME AIR_SOCKET ROOT ROLE START_S HOST_EPOCH_S
#                                              TIME_SCALE RUN_S [PROFILE]
#
# World time = START_S + (host time - HOST_EPOCH_S) x TIME_SCALE, as on hal_virtual. Prints one
# JSON line each time an advertisement goes on air ({"adv": t, "rpi": hex, "addr": hex}) and a summary line
# at the end ({"done": ..., "dropped", "ignored", "heard", "on_time", "mem_free"}).
import gc
import json
import os
import select
import sys

import bluetooth
from air_board import Quiet, Rtc
from tokenfw import radio as radio_mod
from tokenfw.app import Token

class LoggingRadio(radio_mod.Radio):
    def __init__(self, rtc):
        radio_mod.Radio.__init__(self, rtc.ticks_ms)
        self.rtc = rtc

    def _start_advertising(self, payload, interval_ms, connectable, resp_data, rotate=True):
        # Every time an identifier goes on air (a rotation, or a burst token's wake).
        radio_mod.Radio._start_advertising(self, payload, interval_ms, connectable, resp_data, rotate)
        print(json.dumps({"adv": self.rtc.seconds(), "rpi": payload[11:27].hex(), "addr": self.address.hex()}))


class Console:
    """No host on the console; waiting services the air socket, as hal_virtual does."""

    def __init__(self, scale):
        self.scale = scale
        self.poll = select.poll()
        self.poll.register(bluetooth.poll_object(), select.POLLIN)

    def read_available(self):
        return b""

    def write(self, data):
        pass

    def wait(self, timeout_ms):
        self.poll.poll(max(0, int(timeout_ms / self.scale)))
        bluetooth.service()


class Board:
    def __init__(self, name, socket_path, start_s, host_epoch_s, scale):
        bluetooth.attach(socket_path, name)
        self.name = name
        self.rtc = Rtc(start_s, host_epoch_s, scale)
        self.radio = LoggingRadio(self.rtc)
        self.led = self.button = self.battery = Quiet()
        self.console = Console(scale)


def main():
    name, socket_path, root, role = sys.argv[1:5]
    start_s, host_epoch_s, scale, run_s = [float(v) for v in sys.argv[5:9]]
    profile = sys.argv[9] if len(sys.argv) > 9 else "continuous"
    try:
        os.mkdir(root)
    except OSError:
        pass
    with open(root + "/config.json", "w") as f:
        json.dump({"serial": "TT-" + name.upper(), "role": role, "identity": "private", "profile": profile}, f)
    board = Board(name, socket_path, start_s, host_epoch_s, scale)
    token = Token(board, root=root)
    token.clock.set(int(board.rtc.world()))
    until = token.clock.now() + run_s
    token.run(until=until)
    gc.collect()
    print(json.dumps({"done": token.clock.now(), "dropped": board.radio.dropped,
                      "ignored": board.radio.ignored, "heard": board.radio.heard,
                      "on_time": board.radio.on_time(), "mem_free": gc.mem_free(),
                      "scan_windows": board.radio.scan_windows,
                      "records": token.store.next_seq - 1}))


main()
