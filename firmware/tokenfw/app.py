# The token's main loop: advertise rotating identifiers, listen in scan windows, log what was
# heard, answer the sync protocol on the console, and tell the wearer its status.
#
# All hardware is reached through `board` (a HAL's Board: rtc, radio, led, button, battery,
# console) and all time through `self.clock` / `board.console.wait`, so the same loop runs on
# an ESP32, on the virtual token, and in tests that run a simulated day in seconds.
#
# Edge cases this loop must survive: the clock never set (log anyway, flag the records, blink
# amber); a full or corrupted flash (the store drops oldest data and counts, logging goes on);
# a burst of advertisements (the radio ring buffer drops and counts the excess); a technician's
# Ctrl-C (commit what is buffered, then let KeyboardInterrupt reach the REPL).
#
# Deep sleep (the `burst` profile): between wakes run() returns how long to sleep and the board
# deep-sleeps (main.py). Nothing but RTC memory survives, so the loop first commits the log and
# packs its open encounters and counters there (tokenfw.deepsleep); the next boot finds them
# and carries on. A token stays awake while a host talks to it, while a sync window is open, on
# USB power, and for two minutes after a power-on or reset (a technician's REPL).
import gc
import os

from tokenfw import VERSION, adv, config, gaen, scheduler
from tokenfw.clock import Clock
from tokenfw.encounters import Aggregator
from tokenfw.eventlog import EventLog
from tokenfw.keystore import KeyStore
from tokenfw.store import Store

try:
    from micropython import const
except ImportError:  # CPython
    def const(value):
        return value

CONFIG_PATH = "/config.json"
CLOCK_PATH = "/clock.json"
LOG_DIR = "/log"
KEYS_PATH = "/keys.bin"
EVENTS_PATH = "/events.bin"

_MAX_WAIT_MS = const(1000)  # wake at least once a second for the button and housekeeping
_SYNC_IDLE_S = const(120)  # unload the sync stack this long after the host went quiet
_COLD_BOOT_AWAKE_S = const(120)  # no deep sleep this long after a power-on or reset
_MIN_DEEP_SLEEP_MS = const(2000)  # shorter gaps are waited out awake: every wake costs a boot
_TICKS_MASK = const(0x3FFFFFFF)
# What the token did since the last "radio" log line (kept across deep sleeps)
COUNTERS = ("scan_ms", "adv_ms", "awake_ms", "asleep_ms", "wakes")
_LOW_BATTERY_PERCENT = const(15)
_SYNC_OVERDUE_S = const(7 * 86400)  # amber when the log has not been synced for a week

DEFAULT_CONFIG = {
    "serial": None,  # set by PROVISION; an unprovisioned token still logs, as "private"
    "role": "wearable",
    "identity": "private",
    "tx_power_dbm": -8,
    "profile": "continuous",
    # An RPI unheard this long closes its encounter: two scan spacings, so one missed window
    # does not split a contact (the 10-minute interval boundary closes records anyway).
    "gap_s": 600,
    "max_open": 48,  # open encounters held in RAM at once (a crowd beyond this is evicted)
}


class Token:
    def __init__(self, board, root=""):
        self.board = board
        self.version = VERSION
        self.root = root
        self.events = EventLog(root + EVENTS_PATH)
        self.config = self._load_config()
        self.clock = Clock(board.rtc, root + CLOCK_PATH)
        self.events.clock = self.clock.now
        self.store = Store(root + LOG_DIR, events=self.events)
        self.keys = KeyStore(root + KEYS_PATH)
        self.sync = None  # the sync protocol on the console, loaded while a host talks
        self.ble_sync = None  # the GATT service carrying it over BLE (radios that offer GATT)
        self.ble_server = None
        self.rng = scheduler.Rng(self._rng_seed())
        self.last_sync_at = self.config.get("last_sync_at")
        self._usb_was_powered = False
        self._apply_config()
        self._resumed = self._resume()

    # -- configuration -------------------------------------------------------------------
    def _load_config(self):
        stored = config.load(self.root + CONFIG_PATH)
        merged = dict(DEFAULT_CONFIG)
        if isinstance(stored, dict):
            merged.update(stored)
        elif stored is not None:
            self.events.log("config", "unreadable config ignored")
        return merged

    def _rng_seed(self):
        """Seed of the scan schedule: random per boot (the simulator fixes it to replay a token)."""
        return int.from_bytes(os.urandom(4), "little")

    def _apply_config(self):
        cfg = self.config
        self.profile = scheduler.profile("venue" if cfg["role"] == "venue" else cfg["profile"])
        self.aggregator = None  # let the old table go before the new one is built (heap)
        gc.collect()
        self.aggregator = Aggregator(gap_s=cfg["gap_s"], max_open=cfg["max_open"], on_close=self._log_encounter)
        self.interval = None  # forces an identifier rotation on the next loop pass
        self._key_day = None
        self.identifiers = self._make_identifiers()
        self.current_rpi = None
        self.next_scan_at = None
        self.scan_id = 0
        set_profile = getattr(self.board.radio, "set_profile", None)
        if set_profile is not None:
            set_profile(self.profile)
        self._open_ble_sync()

    def _open_ble_sync(self):
        """Register the BLE sync service once the token has a serial to be found by. Radios
        without GATT (a stand-in) simply do without; the USB console always works."""
        radio = self.board.radio
        if self.ble_sync is not None or not self.config.get("serial"):
            return
        if not hasattr(getattr(radio, "_ble", None), "gatts_register_services"):
            return
        from tokenfw.ble_sync import BleSync

        self.ble_sync = BleSync(radio, self.config["serial"])

    def _resume(self):
        """After a deep-sleep wake, what the token kept in RTC memory (tokenfw.deepsleep), its
        open encounters back in the aggregator; None after a power-on or reset."""
        wake_memory = getattr(self.board, "wake_memory", None)
        memory = wake_memory() if wake_memory is not None else None
        if memory is None:
            return None
        from tokenfw import deepsleep

        state = deepsleep.resume(self, memory)
        if state is None:
            # Go on as after a power-on: the log on flash is whole, the open encounters are gone.
            self.events.log("sleep", "open encounters lost: RTC memory damaged")
        return state

    def reconfigure(self, new_config):
        """Save a new configuration atomically and start using it (PROVISION, TIME settings)."""
        self.close_encounters()
        merged = dict(DEFAULT_CONFIG)
        merged.update(new_config)
        config.save(self.root + CONFIG_PATH, merged)
        if (merged["identity"], merged.get("seed")) != (self.config["identity"], self.config.get("seed")):
            self.keys.wipe()  # keys of the old identity must not be handed out as this one's
        self.config = merged
        self._apply_config()

    def wipe(self):
        """Forget every encounter, key and event, keep nothing of the previous wearer."""
        self.aggregator.close_all(self.clock.now())
        self.store.wipe()
        self.keys.wipe()
        self.events.wipe()
        self._apply_config()

    def close_encounters(self):
        """Log every open encounter now (before the clock changes under them)."""
        self.aggregator.close_all(self.clock.now())
        self.store.commit()

    def note_synced(self, now):
        self.last_sync_at = now
        self.config["last_sync_at"] = now
        config.save(self.root + CONFIG_PATH, self.config)

    # -- identifiers ------------------------------------------------------------------------
    def _make_identifiers(self):
        cfg = self.config
        escrowed = cfg["identity"] == "escrowed" and cfg.get("seed")
        return gaen.TekSchedule(
            "escrowed" if escrowed else "private",
            seed=bytes.fromhex(cfg["seed"]) if escrowed else None,
            tx_power_dbm=cfg["tx_power_dbm"],
            lookup=lambda day: self.keys.get(day * 144),
            on_new_tek=lambda day, tek: self.keys.put(tek, day * 144),
        )

    def _rotate(self, now):
        enin = gaen.interval_number(now)
        rpi, aem = self.identifiers.identifiers(enin)
        day = enin // 144
        if day != self._key_day:
            self._key_day = day
            if self.keys.get(day * 144) is None:  # escrowed TEKs are kept too, for KEYS
                self.keys.put(self.identifiers.tek(day), day * 144)
        self.current_rpi = rpi
        self.interval = enin
        if self.profile["advertise"]:
            # The HAL gives every advertise() call a fresh random address: RPI and address
            # always change together.
            self.board.radio.advertise(adv.gaen_payload(rpi, aem), self.profile["adv_interval_ms"])

    # -- encounters -------------------------------------------------------------------------
    def _log_encounter(self, encounter):
        self.store.append(encounter)

    def _on_report(self, adv_data, rssi):
        parsed = adv.parse_gaen(adv_data)
        if parsed is None:
            return
        rpi, aem = parsed
        if rpi == self.current_rpi:
            return  # our own advertisement reflected back
        self.aggregator.sighting(rpi, aem, rssi, self.clock.now(), self.scan_id)

    # -- status -------------------------------------------------------------------------------
    def status(self, now):
        """"ok", or what the wearer's helper must do: "charge", "clock", "sync"."""
        if self.board.battery.percent() < _LOW_BATTERY_PERCENT:
            return "charge"
        if not self.clock.is_set():
            return "clock"
        if self.last_sync_at is not None and now - self.last_sync_at > _SYNC_OVERDUE_S:
            return "sync"
        return "ok"

    # -- main loop ------------------------------------------------------------------------------
    def step(self, now):
        """One pass of the loop; returns how long it may sleep (ms) before the next due work."""
        radio = self.board.radio
        self.aggregator.clock_set = self.clock.is_set()
        if self.interval is None or gaen.interval_number(now) != self.interval:
            self.aggregator.tick(now)
            self._rotate(now)
        if self.profile["scan"]:
            if self.next_scan_at is None:
                self.next_scan_at = scheduler.first_scan(now, self.profile, self.rng)
            if now >= self.next_scan_at and not radio.scanning():
                self.scan_id = (self.scan_id + 1) & 0xFFFF  # kept as 16 bits across deep sleep
                radio.start_scan(self.profile["scan_window_ms"])
                self.next_scan_at = scheduler.next_scan(self.next_scan_at, self.profile, self.rng)
                if self.next_scan_at <= now:  # we slept through windows (a long sync, a stall)
                    self.next_scan_at = scheduler.next_scan(now, self.profile, self.rng)
        radio.take_reports(self._on_report)
        if not radio.scanning():
            self.aggregator.tick(now)
        if now - self.last_commit >= scheduler.COMMIT_EVERY_S:
            self.commit(now)
        if now - self.last_retention >= scheduler.RETENTION_EVERY_S:
            self.last_retention = now
            self.store.enforce_retention(now)
            self.keys.prune(gaen.interval_number(now))
            self._log_radio_on_time(now)
        pressed = self.board.button.pressed()
        if now - self.last_status >= scheduler.STATUS_EVERY_S or pressed:
            self.last_status = now
            self.board.led.show(self.status(now))
        usb_powered = self._usb_powered()
        plugged_in = usb_powered and not self._usb_was_powered
        self._usb_was_powered = usb_powered
        if self.ble_sync is not None:
            # The wearer's button, or plugging into USB power, opens a BLE sync window. Only
            # the moment of plugging in: a token charging overnight must go on advertising.
            if (pressed or plugged_in) and not self.ble_sync.window_open():
                self.ble_sync.open_window(now)
            self.ble_sync.tick(now)
        due = [scheduler.next_rotation(now), self.last_commit + scheduler.COMMIT_EVERY_S]
        if self.profile["scan"]:
            due.append(self.next_scan_at)
        wait_s = min(due) - now
        if radio.scanning():
            wait_s = min(wait_s, 0.25)  # drain the ring buffer often while listening
        return max(0, min(_MAX_WAIT_MS, int(wait_s * 1000)))

    def _usb_powered(self):
        usb_powered = getattr(self.board, "usb_powered", None)
        return usb_powered is not None and usb_powered()

    # -- what the token did, for battery life ------------------------------------------------------
    def _radio_on_time(self):
        on_time = getattr(self.board.radio, "on_time", None)
        return on_time() if on_time is not None else {"scan_ms": 0, "adv_ms": 0}

    def counters(self):
        """Radio and awake/asleep time since the last "radio" log line, deep sleeps included.
        The radio's counters keep running (others read them); these are differences."""
        counters = dict(self._unlogged)
        on = self._radio_on_time()
        counters["scan_ms"] += on["scan_ms"] - self._radio_base["scan_ms"]
        counters["adv_ms"] += on["adv_ms"] - self._radio_base["adv_ms"]
        counters["awake_ms"] += (self.clock.ticks_ms() - self._awake_since_ms) & _TICKS_MASK
        return counters

    def _start_counting(self, unlogged):
        self._unlogged = unlogged
        self._radio_base = self._radio_on_time()
        self._awake_since_ms = self.clock.ticks_ms()

    def _log_radio_on_time(self, now):
        """What the radio really did since the last line: battery life is computed from these."""
        c = self.counters()
        self._start_counting(dict.fromkeys(COUNTERS, 0))
        self.events.log("radio", "%s scan %d adv %d ms" % (self.config["profile"], c["scan_ms"], c["adv_ms"]), now)
        if self.profile.get("deep_sleep"):
            self.events.log("sleep", "awake %d asleep %d s wakes %d" % (
                c["awake_ms"] // 1000, c["asleep_ms"] // 1000, c["wakes"]), now)

    # -- deep sleep -------------------------------------------------------------------------------
    def _deep_sleep_ms(self, now):
        """How long the token may deep-sleep now (0: stay awake)."""
        if not self.profile.get("deep_sleep") or not hasattr(self.board, "deep_sleep"):
            return 0
        if now < self._stay_awake_until or self.sync is not None or self.ble_server is not None:
            return 0
        if self.board.radio.scanning() or (self.ble_sync is not None and self.ble_sync.window_open()):
            return 0
        if self._usb_powered():
            return 0
        sleep_ms = self.clock.ms_until(scheduler.next_wake(now, self.profile))
        return sleep_ms if sleep_ms >= _MIN_DEEP_SLEEP_MS else 0

    def commit(self, now):
        self.last_commit = now
        try:
            self.store.commit()
        except OSError as error:
            self.events.log("store", "commit failed: %s" % error, now)
        gc.collect()

    def handle_console(self, now):
        data = self.board.console.read_available()
        if data:
            if self.sync is None:
                self.sync = _load_sync_server()(self)
            self._sync_used_at = now
            self.sync.feed(data, self.board.console.write)
        if self.ble_sync is not None and self.ble_sync.poll(self._feed_ble):
            self._sync_used_at = now
        if now - self._sync_used_at > _SYNC_IDLE_S and (self.sync or self.ble_server):
            self.sync = self.ble_server = None
            _unload("tokenfw.sync")

    def _feed_ble(self, data, write):
        if self.ble_server is None:  # BLE gets its own server: its own framing state and nonce
            self.ble_server = _load_sync_server()(self)
        self.ble_server.feed(data, write)

    def run(self, until=None):
        """Run until `until` (token clock seconds) or forever; returns how long to deep-sleep
        (ms) when the profile sleeps between wakes, None at `until`. KeyboardInterrupt (a
        technician's Ctrl-C) commits what is buffered and then propagates to the REPL."""
        now = self.clock.now()
        self._sync_used_at = now
        resumed = self._resumed
        if resumed is None:
            self.last_commit = now
            self.last_status = now - scheduler.STATUS_EVERY_S
            self.last_retention = now - scheduler.RETENTION_EVERY_S
            self._stay_awake_until = now + _COLD_BOOT_AWAKE_S
            self._start_counting(dict.fromkeys(COUNTERS, 0))
            self.events.log("boot", "firmware %s role %s" % (self.version, self.config["role"]), now)
        else:
            self.last_commit, self.last_status, self.last_retention, unlogged = resumed
            self._stay_awake_until = now
            self._start_counting(unlogged)
        asleep = False
        try:
            while until is None or now < until:
                wait_ms = self.step(now)
                sleep_ms = self._deep_sleep_ms(now)
                if sleep_ms:
                    from tokenfw import deepsleep

                    deepsleep.prepare(self, now, sleep_ms)
                    asleep = True
                    return sleep_ms
                self.board.console.wait(wait_ms)
                now = self.clock.now()
                self.handle_console(now)
        finally:
            if not asleep:  # a sleeping token's open encounters are in RTC memory
                self.aggregator.close_all(self.clock.now())
                self.store.commit()
        return None


# The sync stack's bytecode is a third of the app's RAM when it is loaded from the filesystem
# rather than frozen; a token talks to a host a few minutes a week, so it is loaded on the
# first console byte and dropped again when the host has gone quiet.
def _load_sync_server():
    from tokenfw.sync.server import SyncServer

    return SyncServer


def _unload(prefix):
    import sys

    for name in [n for n in sys.modules if n.startswith(prefix)]:
        del sys.modules[name]
    package = sys.modules.get(prefix.rsplit(".", 1)[0])
    if package is not None and hasattr(package, prefix.rsplit(".", 1)[1]):
        delattr(package, prefix.rsplit(".", 1)[1])
    gc.collect()
