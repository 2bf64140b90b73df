"""The radio adapter's on-time accounting, on a controller that answers like NimBLE.

NimBLE reports SCAN_DONE both when a window ends and when the host stops a scan, through the
MicroPython scheduler: the IRQ may run while the main loop is still inside `gap_scan(None)`,
with the clock already moved on. Battery estimates are computed from these counters, so a
window must count its length once, however its SCAN_DONE arrives.
"""
from __future__ import annotations

from tokenfw.radio import Radio

_IRQ_SCAN_DONE = 6


class NimbleLikeBLE:
    """The subset of `bluetooth.BLE` the radio uses; SCAN_DONE is delivered `irq_delay_ms`
    of token time after a stop, from inside the stopping call."""

    def __init__(self, clock, irq_delay_ms):
        self.clock = clock
        self.irq_delay_ms = irq_delay_ms
        self.scan_active = False
        self.handler = None
        self.macs = 0

    def active(self, on=None):
        return True

    def irq(self, handler):
        self.handler = handler

    def config(self, *args, **kwargs):
        if kwargs.get("addr_mode") == 3:
            self.macs += 1
        return (1, bytes([0, 0, 0, 0, 0, self.macs]))

    def gap_advertise(self, interval_us, adv_data=None, resp_data=None, connectable=True):
        pass

    def gap_scan(self, duration_ms, *args):
        if duration_ms is None:
            if self.scan_active:
                self.scan_active = False
                self.clock[0] += self.irq_delay_ms
                self.handler(_IRQ_SCAN_DONE, ())
            return
        self.scan_active = True

    def window_ends(self):
        self.scan_active = False
        self.handler(_IRQ_SCAN_DONE, ())


def _radio(irq_delay_ms):
    clock = [0]
    ble = NimbleLikeBLE(clock, irq_delay_ms)
    return Radio(lambda: clock[0], ble), ble, clock


def test_a_window_split_by_a_rotation_counts_its_length_once():
    for irq_delay_ms in (0, 700, 5000):
        radio, ble, clock = _radio(irq_delay_ms)
        radio.start_scan(4000)
        clock[0] = 1500
        radio.advertise(b"\x03\x03\x6f\xfd", 250)  # a new RPI mid-window: stop, rotate, resume
        assert ble.scan_active, "the rest of the window is listened to"
        clock[0] += 4000
        ble.window_ends()
        assert not radio.scanning()
        assert radio.on_time()["scan_ms"] == 4000, irq_delay_ms
        assert radio.scan_windows == 1


def test_a_window_whose_end_is_not_yet_seen_counts_its_length():
    radio, ble, clock = _radio(0)
    for _ in range(3):
        radio.start_scan(4000)
        clock[0] += 9000  # the main loop looks only long after SCAN_DONE came
        ble.window_ends()
    assert radio.on_time()["scan_ms"] == 3 * 4000


def test_an_open_window_is_reported_without_being_counted_twice():
    radio, ble, clock = _radio(0)
    radio.start_scan(4000)
    clock[0] = 1000
    assert radio.on_time()["scan_ms"] == 1000
    clock[0] = 4200
    ble.window_ends()
    assert radio.on_time()["scan_ms"] == 4000
