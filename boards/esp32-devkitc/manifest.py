# Freeze the token firmware into a custom MicroPython build for the esp32-devkitc board.
#
# Frozen bytecode executes from flash, so the app's code costs no heap: the ~100 KB an ESP32
# without PSRAM leaves to Python stays for buffers and the encounter table. Build with:
#
#   cd micropython/ports/esp32
#   make BOARD=ESP32_GENERIC FROZEN_MANIFEST=/path/to/this/repo/boards/esp32-devkitc/manifest.py
#
# Relative paths here resolve against this file's folder. A frozen main.py runs at boot like
# /main.py. After flashing, copy boards/esp32-devkitc/board.json to the token's /board.json (the firmware
# reads its pins and calibration from there); `tokentool deploy` is meant to do both.
include("$(PORT_DIR)/boards/manifest.py")  # the port's own frozen modules (_boot, neopixel, ...)
freeze("../../firmware", "main.py")
freeze("../../firmware", "tokenfw")  # every module of the package, hal_esp32 included
