# The token's own TEKs on flash (tokenfw.keystore): 21 days kept, replaced per day, survive reboot.
from mptest import raises
from test_store import Flash, corrupt_byte
from tokenfw.keystore import KeyStore

DAY = 144  # rolling intervals per day
TODAY = 2945376 + 30 * DAY


def tek(day):
    return bytes([day % 256]) * 15 + b"\x5a"


def test_keys_are_kept_21_days_and_read_back_in_order():
    flash = Flash()
    try:
        keys = KeyStore(flash.path("keys.bin"))
        assert keys.entries() == [] and keys.get(TODAY) is None
        for day in range(30):
            keys.put(tek(day), TODAY - (29 - day) * DAY)
        flash.power_cycle()
        keys = KeyStore(flash.path("keys.bin"))
        stored = keys.entries()
        assert len(stored) == 21
        assert stored == [(tek(day), TODAY - (29 - day) * DAY) for day in range(9, 30)]
        assert keys.get(TODAY) == tek(29)
        assert keys.get(TODAY - 25 * DAY) is None  # older than 21 days: gone
        assert keys.since(TODAY - DAY + 5) == [(tek(28), TODAY - DAY), (tek(29), TODAY)]
    finally:
        flash.close()


def test_a_day_key_is_replaced_not_duplicated_and_bad_input_is_refused():
    flash = Flash()
    try:
        keys = KeyStore(flash.path("keys.bin"))
        keys.put(tek(1), TODAY)
        keys.put(tek(2), TODAY)
        assert keys.entries() == [(tek(2), TODAY)]
        raises(ValueError, keys.put, b"short", TODAY)
        raises(ValueError, keys.put, tek(3), -1)
        assert keys.entries() == [(tek(2), TODAY)]
    finally:
        flash.close()


def test_prune_drops_old_keys_and_a_corrupt_entry_is_skipped():
    flash = Flash()
    try:
        keys = KeyStore(flash.path("keys.bin"))
        for day in range(5):
            keys.put(tek(day), TODAY + day * DAY)
        keys.prune(TODAY + 23 * DAY)  # the 21 days ending with day 23 start at day 3
        assert [start for _, start in keys.entries()] == [TODAY + 3 * DAY, TODAY + 4 * DAY]
        corrupt_byte(flash.path("keys.bin"), 3)  # first entry damaged on flash
        keys = KeyStore(flash.path("keys.bin"))
        assert keys.entries() == [(tek(4), TODAY + 4 * DAY)]
        assert keys.corrupt_skipped == 1
        keys.wipe()
        assert keys.entries() == []
    finally:
        flash.close()
