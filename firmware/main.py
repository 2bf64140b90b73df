# Token entry point: read the board description, open its hardware adapters, run the app.
# On an ESP32 this is /main.py (or frozen); on the virtual token vboot.py imports it after
# mounting the flash image.
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


Token(open_board()).run()
