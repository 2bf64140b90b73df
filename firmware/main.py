# Token entry point: read the board description, open its hardware adapters, run the app.
# On an ESP32 this is /main.py (or frozen); on the virtual token vboot.py imports it after
# mounting the flash image.
import gc
import json

from tokenfw.app import Token


def _import(name):
    module = __import__(name)
    for part in name.split(".")[1:]:
        module = getattr(module, part)
    return module


def open_board():
    with open("/board.json") as f:
        board_config = json.load(f)
    return _import(board_config["hal"]).open_board(board_config)


board = open_board()
while True:
    # run() returns only when the power profile deep-sleeps until its next wake. An ESP32
    # never comes back from deep_sleep (it wakes with a reset and runs this file again); a
    # board that cannot sleep that way (the unix port) returns once the time has passed, with
    # RAM to be treated as lost: a new Token starts from RTC memory, as after a real wake.
    sleep_ms = Token(board).run()
    gc.collect()
    board.deep_sleep(sleep_ms)
