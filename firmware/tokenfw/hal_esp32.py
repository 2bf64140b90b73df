# The ESP32 boards' hardware (ESP32, -C3, -S3), behind the Board interface every HAL offers:
#   rtc      seconds() / set_seconds(s) in the port's epoch, ticks_ms()
#   radio    advertise(payload, interval_ms), stop_advertising(), start_scan(duration_ms),
#            scanning(), take_reports(callback(adv_data, rssi)), dropped
#   led      show(pattern)      button  pressed()      battery  millivolts(), percent()
#   console  read_available(), write(data), wait(timeout_ms)
#   sleep_ms(ms), usb_powered(), rtc_memory(data), wake_memory(), deep_sleep(ms)
# Pins and calibration come from /board.json (boards/<board>/board.json in the repository).
#
# The radio is tokenfw.radio.Radio over MicroPython's `bluetooth` (its IRQ handler only copies
# reports into a preallocated ring; parsing happens in the main loop). This module runs only on
# an ESP32 (it imports machine); the virtual token uses boards/virtual/hal_virtual.py.
import select
import sys
import time

import esp32
import machine
from micropython import const

from tokenfw.radio import Radio

_CONSOLE_CHUNK = const(256)
_BLINK_MS = const(60)

# Status light colours (r, g, b) for an addressable LED; discrete LEDs use green / red / both.
_COLOURS = {"ok": (0, 40, 0), "charge": (40, 0, 0), "clock": (40, 16, 0), "sync": (40, 16, 0)}


class Rtc:
    def __init__(self):
        self._rtc = machine.RTC()

    def seconds(self):
        return time.time()

    def set_seconds(self, seconds):
        year, month, day, hour, minute, second, weekday, _ = time.gmtime(seconds)
        self._rtc.datetime((year, month, day, weekday, hour, minute, second, 0))

    def ticks_ms(self):
        return time.ticks_ms()

    def milliseconds(self):
        return time.time_ns() // 1000000


class Led:
    def __init__(self, pins):
        self.pattern = None
        self._rgb = None
        self._green = self._red = None
        on = 1 if pins.get("led_active_high", True) else 0
        self._on, self._off = on, 1 - on
        if pins.get("led_rgb") is not None:
            import neopixel

            self._rgb = neopixel.NeoPixel(machine.Pin(pins["led_rgb"]), 1)
        if pins.get("led_green") is not None:
            self._green = machine.Pin(pins["led_green"], machine.Pin.OUT, value=self._off)
        if pins.get("led_red") is not None:
            self._red = machine.Pin(pins["led_red"], machine.Pin.OUT, value=self._off)

    def _light(self, colour):
        r, g, _ = colour
        if self._rgb is not None:
            self._rgb[0] = colour
            self._rgb.write()
        if self._green is not None:
            self._green.value(self._on if g else self._off)
        if self._red is not None:
            self._red.value(self._on if r else self._off)

    def show(self, pattern):
        """One short blink in the pattern's colour (green ok, red charge, amber clock/sync)."""
        self.pattern = pattern
        self._light(_COLOURS.get(pattern, (40, 0, 0)))
        time.sleep_ms(_BLINK_MS)
        self._light((0, 0, 0))


class Button:
    def __init__(self, pins):
        self._pin = None
        self._pressed_level = 0 if pins.get("button_active_low", True) else 1
        if pins.get("button") is not None:
            pull = machine.Pin.PULL_UP if self._pressed_level == 0 else machine.Pin.PULL_DOWN
            self._pin = machine.Pin(pins["button"], machine.Pin.IN, pull)
        # A press that woke the token from deep sleep (ext0) counts once, released or not.
        self._pressed_at_wake = machine.reset_cause() == machine.DEEPSLEEP_RESET and machine.wake_reason() == machine.EXT0_WAKE

    def pressed(self):
        if self._pressed_at_wake:
            self._pressed_at_wake = False
            return True
        return self._pin is not None and self._pin.value() == self._pressed_level

    def wake_on_press(self):
        """Let a press end a deep sleep (ext0). Chips without ext0 (ESP32-C3) or a button off
        the RTC GPIOs cannot: the press is then seen at the next timed wake, if still held."""
        if self._pin is None:
            return
        try:
            esp32.wake_on_ext0(self._pin, self._pressed_level)
        except (AttributeError, ValueError, OSError):
            pass


class Battery:
    def __init__(self, battery):
        self._divider = battery.get("divider", 2.0)
        self._empty_mv = battery.get("empty_mv", 3300)
        self._full_mv = battery.get("full_mv", 4200)
        self._adc = None
        if battery.get("adc_pin") is not None:
            self._adc = machine.ADC(machine.Pin(battery["adc_pin"]), atten=machine.ADC.ATTN_11DB)

    def millivolts(self):
        if self._adc is None:
            return self._full_mv  # powered from USB: report full
        return int(self._adc.read_uv() * self._divider) // 1000  # read_uv is factory-calibrated

    def percent(self):
        percent = (self.millivolts() - self._empty_mv) * 100 // (self._full_mv - self._empty_mv)
        return max(0, min(100, percent))


class Console:
    """USB serial / UART REPL: the sync protocol shares it with the REPL."""

    def __init__(self):
        self._stdin = sys.stdin.buffer
        self._stdout = sys.stdout.buffer
        self._poll = select.poll()
        self._poll.register(self._stdin, select.POLLIN)

    def read_available(self):
        data = b""
        while len(data) < _CONSOLE_CHUNK and self._poll.poll(0):
            data += self._stdin.read(1)
        return data

    def write(self, data):
        self._stdout.write(data)

    def wait(self, timeout_ms):
        self._poll.poll(max(0, timeout_ms))


class Board:
    def __init__(self, board_config):
        self.name = board_config.get("name", "esp32")
        self.config = board_config
        # BLE needs 80 MHz at least; the boards' idle current (board.json power) is at 80 MHz.
        machine.freq(board_config.get("cpu_hz", 80000000))
        pins = board_config.get("pins", {})
        self._vbus = None  # VBUS through a divider: high while on USB power
        if pins.get("vbus_sense") is not None:
            self._vbus = machine.Pin(pins["vbus_sense"], machine.Pin.IN)
        self.rtc = Rtc()
        self.radio = Radio(time.ticks_ms)
        self.led = Led(pins)
        self.button = Button(pins)
        self.battery = Battery(board_config.get("battery", {}))
        self.console = Console()

    def sleep_ms(self, ms):
        time.sleep_ms(ms)

    def usb_powered(self):
        return self._vbus is not None and self._vbus.value() == 1

    def rtc_memory(self, data):
        machine.RTC().memory(data)

    def wake_memory(self):
        """RTC memory after a deep-sleep wake; None after a power-on or reset (garbage then)."""
        if machine.reset_cause() != machine.DEEPSLEEP_RESET:
            return None
        return bytes(machine.RTC().memory())

    def deep_sleep(self, ms):
        """Radio off, then deep sleep; the wake is a reset that runs main.py again. The button
        (ext0) and USB power (ext1 on the VBUS pin) end the sleep early."""
        self.radio.stop_scan()
        self.radio.stop_advertising()
        self.button.wake_on_press()
        if self._vbus is not None:
            try:
                esp32.wake_on_ext1((self._vbus,), esp32.WAKEUP_ANY_HIGH)
            except (ValueError, OSError):
                pass  # not an RTC GPIO on this chip: USB is noticed at the next wake
        machine.deepsleep(ms)


def open_board(board_config):
    return Board(board_config)
