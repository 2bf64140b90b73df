# Runs the firmware's own main loop (tokenfw.app.Token) for DAYS of simulated token time on
# MicroPython, on littlefs over a file-backed 2 MiB flash chip, hearing a crowd of CROWD devices
# that changes every 15 minutes. Prints one JSON line with what it measured.
#
# usage: micropython firmware_day.py IMAGE DAYS CROWD
import gc
import json
import os
import sys
import time

import blockdev
import hal_simulated
from tokenfw.app import Token

image, days, crowd_size = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
START_S = 1767225600  # 2026-01-01T00:00:00Z

bdev = blockdev.FileBlockDevice(image)
blockdev.mount(bdev, "/flash")


_crowd = [None, None]  # (block, devices): the crowd is built once per 15-minute block


def crowd(t):
    block = int(t) // 900
    if _crowd[0] != block:
        _crowd[1] = None  # free the last crowd before building the next
        _crowd[1] = [(block * crowd_size + i, -50 - (i % 40)) for i in range(crowd_size)]
        _crowd[0] = block
    return _crowd[1]


board = hal_simulated.Board(START_S, crowd)
peak = [0, 0]


class MeasuredToken(Token):
    def step(self, now):
        peak[1] += 1
        if peak[1] % 97 == 0:  # sample the live heap now and then (collect first: live data only)
            gc.collect()
            peak[0] = max(peak[0], gc.mem_alloc())
        return Token.step(self, now)


token = MeasuredToken(board, root="/flash")
token.clock.set(START_S)
began_ms = time.ticks_ms()
token.run(until=START_S + int(days * 86400))
elapsed_ms = time.ticks_diff(time.ticks_ms(), began_ms)
gc.collect()
stats = token.store.stats()
print(json.dumps({
    "days": days,
    "crowd": crowd_size,
    "records": token.store.next_seq,
    "reports_delivered": board.radio.delivered,
    "reports_dropped": board.radio.dropped,
    "identifier_rotations": board.radio.adv_changes,
    "peak_heap_bytes": peak[0],
    "heap_after_bytes": gc.mem_alloc(),
    "heap_total_bytes": gc.mem_alloc() + gc.mem_free(),
    "loop_steps": peak[1],
    "elapsed_ms": elapsed_ms,
    "store": stats,
}))
