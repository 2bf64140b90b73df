# Runs the firmware's main loop with the `burst` profile for HOURS of simulated token time on
# MicroPython (littlefs on a file-backed flash chip), deep-sleeping between wakes the way
# main.py does: a new Token after every sleep, nothing kept but RTC memory. A neighbour is
# heard the whole time, a visitor for 20 minutes. Prints one JSON line with what it logged.
#
# usage: micropython burst_hours.py IMAGE HOURS [damage]   (damage: corrupt RTC memory once)
import gc
import json
import sys

import blockdev
import hal_simulated
from tokenfw import config, records
from tokenfw.app import CONFIG_PATH, Token

image, hours = sys.argv[1], float(sys.argv[2])
damage = len(sys.argv) > 3 and sys.argv[3] == "damage"
START_S = 1767225600  # 2026-01-01T00:00:00Z
END_S = START_S + int(hours * 3600)

blockdev.mount(blockdev.FileBlockDevice(image), "/flash")
config.save("/flash" + CONFIG_PATH, {"profile": "burst"})


def crowd(t):
    nearby = [(1, -55)]  # the neighbour: always there
    if START_S + 1800 <= t < START_S + 3000:
        nearby.append((2, -70))  # the visitor
    return nearby


board = hal_simulated.Board(START_S, crowd)
token = Token(board, root="/flash")
token.clock.set(START_S)
sleep_ms = []
while board.rtc.now_s < END_S:
    ms = token.run(until=END_S)
    if ms is None:
        break
    sleep_ms.append(ms)
    if damage and len(sleep_ms) == 10:
        board._rtc_memory = board._rtc_memory[:-1] + bytes([board._rtc_memory[-1] ^ 1])
    token = None  # RAM is lost in the sleep: main.py keeps nothing of the old Token either
    gc.collect()
    board.deep_sleep(ms)
    token = Token(board, root="/flash")

token.close_encounters()
encounters = []
for seq, block in token.store.read():
    enc = records.decode(seq, block)
    device = [d for d in (1, 2) if hal_simulated.SimRadio.rpi_of(d, enc.first_seen // 600)[0] == enc.rpi]
    encounters.append([device[0] if device else None, enc.first_seen - START_S, enc.duration_s, enc.scans])
print(json.dumps({
    "sleeps": len(sleep_ms),
    "sleep_ms": sorted(set(sleep_ms)),
    "deep_sleeps": board.deep_sleeps,
    "ended_s": board.rtc.now_s - START_S,
    "encounters": encounters,
    "events": [[t - START_S, code, detail] for t, code, detail in token.events.entries()],
}))
