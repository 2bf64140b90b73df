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
import gc

from tokenfw import VERSION, adv, config, gaen, scheduler
from tokenfw.clock import Clock
from tokenfw.encounters import Aggregator
from tokenfw.store import EventLog, KeyStore, Store

try:
    from micropython import const
except ImportError:  # CPython
    def const(value):
        return value

CONFIG_PATH = "/config.json"
CLOCK_PATH = "/clock.json"
LOG_DIR = "/log"
KEYS_PATH = "/keys.bin"
EVENTS_PATH = "/events.log"

_MAX_WAIT_MS = const(1000)  # wake at least once a second for the button and housekeeping
_LOW_BATTERY_PERCENT = const(15)
_SYNC_OVERDUE_S = const(7 * 86400)  # amber when the log has not been synced for a week

DEFAULT_CONFIG = {
    "serial": None,  # set by PROVISION; an unprovisioned token still logs, as "private"
    "role": "wearable",
    "identity": "private",
    "tx_power_dbm": -8,
    "profile": "continuous",
    "gap_s": 120,  # an RPI unheard this long closes its encounter (covers one missed window)
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
        self.store = Store(root + LOG_DIR)
        self.keys = KeyStore(root + KEYS_PATH)
        self.sync = None
        self.rng = scheduler.Rng(self._rng_seed())
        self.last_sync_at = self.config.get("last_sync_at")
        self._apply_config()
        try:
            from tokenfw.sync.server import SyncServer
        except ImportError:  # a build without the sync protocol still logs
            SyncServer = None
        if SyncServer is not None:
            self.sync = SyncServer(self)

    # -- configuration -------------------------------------------------------------------
    def _load_config(self):
        stored = config.load(self.root + CONFIG_PATH)
        merged = dict(DEFAULT_CONFIG)
        if isinstance(stored, dict):
            merged.update(stored)
        elif stored is not None:
            self.events.log(0, "config", "unreadable config ignored")
        return merged

    def _rng_seed(self):
        import os

        return int.from_bytes(os.urandom(4), "little")

    def _apply_config(self):
        cfg = self.config
        self.profile = scheduler.profile("venue" if cfg["role"] == "venue" else cfg["profile"])
        self.aggregator = Aggregator(gap_s=cfg["gap_s"], max_open=cfg["max_open"], on_close=self._log_encounter)
        self.interval = None  # forces an identifier rotation on the next loop pass
        self._key_day = None
        self.current_rpi = None
        self.next_scan_at = None
        self.scan_id = 0

    def reconfigure(self, new_config):
        """Save a new configuration atomically and start using it (PROVISION, TIME settings)."""
        merged = dict(DEFAULT_CONFIG)
        merged.update(new_config)
        config.save(self.root + CONFIG_PATH, merged)
        if (merged["identity"], merged.get("seed")) != (self.config["identity"], self.config.get("seed")):
            self.keys.wipe()  # keys of the old identity must not be handed out as this one's
        self.config = merged
        self.aggregator.close_all(self.clock.now())
        self.store.commit()
        self._apply_config()

    def wipe(self):
        """Forget every encounter, key and event, keep nothing of the previous wearer."""
        self.aggregator.close_all(self.clock.now())
        self.store.wipe()
        self.keys.wipe()
        self.events.wipe()
        self._apply_config()

    def note_synced(self, now):
        self.last_sync_at = now
        self.config["last_sync_at"] = now
        config.save(self.root + CONFIG_PATH, self.config)

    # -- identifiers ------------------------------------------------------------------------
    def _tek_for(self, enin):
        start = gaen.tek_start_interval(enin)
        tek = self.keys.get(start)
        if tek is None:
            if self.config["identity"] == "escrowed" and self.config.get("seed"):
                tek = gaen.escrowed_tek(bytes.fromhex(self.config["seed"]), start // 144)
            else:
                tek = gaen.private_tek()
            self.keys.put(start, tek)
        return tek

    def _rotate(self, now):
        enin = gaen.interval_number(now)
        tek = self._tek_for(enin)
        if self._key_day != enin // 144:
            self._key_day = enin // 144
            self._rpik = gaen.rpi_key(tek)
            self._aemk = gaen.aem_key(tek)
        rpi = gaen.rpi(self._rpik, enin)
        aem = gaen.aem(self._aemk, rpi, gaen.metadata(self.config["tx_power_dbm"]))
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
                self.scan_id += 1
                radio.start_scan(self.profile["scan_window_ms"])
                self.next_scan_at = scheduler.next_scan(self.next_scan_at, self.profile, self.rng)
                if self.next_scan_at <= now:  # we slept through windows (a long sync, a stall)
                    self.next_scan_at = scheduler.next_scan(now, self.profile, self.rng)
        radio.take_reports(self._on_report)
        if not radio.scanning():
            self.aggregator.tick(now)
        if now - self._last_commit >= scheduler.COMMIT_EVERY_S:
            self._commit(now)
        if now - self._last_retention >= scheduler.RETENTION_EVERY_S:
            self._last_retention = now
            self.store.enforce_retention(now)
            self.keys.enforce_retention(gaen.interval_number(now))
        if now - self._last_status >= scheduler.STATUS_EVERY_S or self.board.button.pressed():
            self._last_status = now
            self.board.led.show(self.status(now))
        due = [scheduler.next_rotation(now), self._last_commit + scheduler.COMMIT_EVERY_S]
        if self.profile["scan"]:
            due.append(self.next_scan_at)
        wait_s = min(due) - now
        if radio.scanning():
            wait_s = min(wait_s, 0.25)  # drain the ring buffer often while listening
        return max(0, min(_MAX_WAIT_MS, int(wait_s * 1000)))

    def _commit(self, now):
        self._last_commit = now
        try:
            self.store.commit()
        except OSError as error:
            self.events.log(now, "store", "commit failed: %s" % error)
        gc.collect()

    def handle_console(self):
        data = self.board.console.read_available()
        if data and self.sync is not None:
            self.sync.feed(data, self.board.console.write)

    def run(self, until=None):
        """Run until `until` (token clock seconds) or forever. KeyboardInterrupt (a technician's
        Ctrl-C) commits what is buffered and then propagates to the REPL."""
        now = self.clock.now()
        self._last_commit = now
        self._last_status = now - scheduler.STATUS_EVERY_S
        self._last_retention = now - scheduler.RETENTION_EVERY_S
        self.events.log(now, "boot", "firmware %s role %s" % (self.version, self.config["role"]))
        try:
            while until is None or now < until:
                wait_ms = self.step(now)
                self.board.console.wait(wait_ms)
                self.handle_console()
                now = self.clock.now()
        finally:
            self.aggregator.close_all(self.clock.now())
            self.store.commit()
