# A listening virtual token for fuzz and burst tests: tokenfw.radio over the virtual
# `bluetooth` module, scanning for an hour, every report parsed by tokenfw.adv.parse_gaen.
#
#   micropython fuzz_token.py NAME AIR_SOCKET
#
# A GAEN report whose RPI is 16 x 0xFF is a marker: the token prints its counters as one JSON
# line ({"heard", "dropped", "ignored", "parsed", "mem_free", "marks"}); RPI 16 x 0xFE ends it.
import gc
import json
import select
import sys
import time

import bluetooth
from tokenfw import adv
from tokenfw.radio import Radio

_MARK = b"\xff" * 16
_QUIT = b"\xfe" * 16


def main():
    bluetooth.attach(sys.argv[2], sys.argv[1])
    radio = Radio(time.ticks_ms)
    poll = select.poll()
    poll.register(bluetooth.poll_object(), select.POLLIN)
    state = {"parsed": 0, "marks": 0, "quit": False, "rpis": 0}

    def on_report(adv_data, rssi):
        parsed = adv.parse_gaen(adv_data)
        if parsed is None:
            return
        rpi = parsed[0]
        if rpi == _MARK or rpi == _QUIT:
            state["marks"] += 1
            state["quit"] = rpi == _QUIT
            gc.collect()
            print(json.dumps({"heard": radio.heard, "dropped": radio.dropped, "ignored": radio.ignored,
                              "parsed": state["parsed"], "mem_free": gc.mem_free(), "marks": state["marks"]}))
            return
        state["parsed"] += 1

    radio.start_scan(3600000)
    print(json.dumps({"ready": True}))
    # IRQs are delivered whenever reports arrive (as NimBLE does on the board); the loop drains
    # the ring every 250 ms, as the app does while a scan window is open.
    last_drain = time.ticks_ms()
    while not state["quit"]:
        poll.poll(10)
        bluetooth.service()
        if time.ticks_diff(time.ticks_ms(), last_drain) >= 250:
            last_drain = time.ticks_ms()
            radio.take_reports(on_report)


main()
