# Pieces shared by the BLE test tokens (air_token.py, sync_token.py): a world clock that runs
# `scale` times the host's from `start_s`, and a board's LED/button/battery that stay quiet.
import time

_TICKS_MASK = 0x3FFFFFFF


class Rtc:
    def __init__(self, start_s, host_epoch_s, scale):
        self.start_s = start_s
        self.host_epoch_s = host_epoch_s
        self.scale = scale
        self.offset_s = 0.0

    def world(self):
        return self.start_s + (time.time() - self.host_epoch_s) * self.scale

    def seconds(self):
        return int(self.world() + self.offset_s)

    def set_seconds(self, seconds):
        self.offset_s = seconds - self.world()

    def ticks_ms(self):
        return int((time.time() - self.host_epoch_s) * self.scale * 1000) & _TICKS_MASK


class Quiet:
    def show(self, pattern):
        pass

    def pressed(self):
        return False

    def millivolts(self):
        return 3900

    def percent(self):
        return 80
