# Steps a token's radio through a sync window in the virtual air, printing what it did; the
# test (test_sync_window_radio.py) checks each step against what the air saw.
#
#   micropython window_token.py NAME AIR_SOCKET
#
# It reads one command per line on stdin and answers one JSON line:
#   gaen N      advertise GAEN identifier N (a rotation)
#   open        open the sync window (connectable advertisement)
#   close       close it
#   state       {"address", "advertising"}
import json
import sys
import time

import bluetooth
from tokenfw import adv
from tokenfw.radio import Radio


def main():
    bluetooth.attach(sys.argv[2], sys.argv[1])
    radio = Radio(time.ticks_ms)
    while True:
        line = sys.stdin.readline()
        if not line:
            return
        words = line.split()
        if words[0] == "gaen":
            n = int(words[1])
            radio.advertise(adv.gaen_payload(bytes([n]) * 16, b"\x00\x01\x02\x03"), 250)
        elif words[0] == "open":
            radio.advertise_sync(b"\x02\x01\x06", b"\x05\x09TT-W", 100)
        elif words[0] == "close":
            radio.end_sync()
        bluetooth.service()
        print(json.dumps({"address": radio.address.hex() if radio.address else None,
                          "advertising": radio.advertising(), "rotations": radio.rotations}))


main()
