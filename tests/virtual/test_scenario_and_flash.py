"""Scenario files are validated line by line; the flash image builder keeps user data and
refreshes factory firmware; every board description carries what the firmware reads."""
from __future__ import annotations

import json

import pytest

from host_tools.micropython import BOARDS_DIR
from host_tools.virtual import flash, scenario
from host_tools.virtual.scenario import ScenarioError, parse_lines

GOOD = """\
# a market morning
{"start": "2026-03-02T08:00:00Z", "time_scale": 60}

{"contact": ["alice", "bob"], "from": 0, "to": 900, "rssi": -60}
{"contact": ["alice", "bob", "market-1"], "from": 1200, "to": 3000}
{"hear": "alice", "at": 600, "adv": "02011a03036ffd17166ffd00112233445566778899aabbccddeeff01020304", "rssi": -70}
"""


def test_a_good_scenario_parses_into_contacts_and_sightings():
    parsed = parse_lines(GOOD.splitlines())
    assert parsed.start_s == 1772438400 and parsed.time_scale == 60
    assert [(c.names, c.from_s, c.to_s, c.rssi) for c in parsed.contacts] == [
        (("alice", "bob"), 0, 900, -60), (("alice", "bob", "market-1"), 1200, 3000, -60)]
    (sighting,) = parsed.sightings
    assert (sighting.name, sighting.at_s, sighting.rssi, len(sighting.adv)) == ("alice", 600, -70, 31)
    assert parsed.names() == {"alice", "bob", "market-1"}
    assert parse_lines(['{"start": 1767225600}']).start_s == 1767225600


@pytest.mark.parametrize("line, message", [
    ('{"contact": ["alice", "bob"], "from": 0, "to": 60', "not valid JSON"),
    ('["alice", "bob"]', "each line must be a JSON object"),
    ('{"contact": ["alice"], "from": 0, "to": 60}', "at least two token names"),
    ('{"contact": ["alice", "alice"], "from": 0, "to": 60}', "names a token twice"),
    ('{"contact": ["alice", "b o b"], "from": 0, "to": 60}', "must be a token name"),
    ('{"contact": ["alice", "bob"], "to": 60}', "'from' is missing"),
    ('{"contact": ["alice", "bob"], "from": -5, "to": 60}', "'from' must be a non-negative number"),
    ('{"contact": ["alice", "bob"], "from": 90, "to": 60}', "'to' is before 'from'"),
    ('{"contact": ["alice", "bob"], "from": 0, "to": 60, "rssi": -200}', "'rssi' must be an integer"),
    ('{"contact": ["alice", "bob"], "from": 0, "to": 60, "rssi": "-60"}', "'rssi' must be an integer"),
    ('{"contact": ["alice", "bob"], "from": 0, "to": 60, "loudness": 3}', "unknown field 'loudness'"),
    ('{"hear": "alice", "at": 5, "adv": "zz"}', "'adv' is not valid hex"),
    ('{"hear": "alice", "at": 5, "adv": ""}', "'adv' must be 1 to 255 bytes"),
    ('{"hear": "alice", "at": 5}', "'adv' must be the advertisement data"),
    ('{"start": "yesterday"}', "'start' 'yesterday' is not an ISO 8601 time"),
    ('{"time_scale": 0}', "'time_scale' must be a number above 0"),
    ('{"walk": "alice"}', "expected a header"),
])
def test_each_malformed_line_is_named_with_its_number(line, message):
    with pytest.raises(ScenarioError) as error:
        parse_lines(["# comments and blank lines count as lines", "", line], source="s.jsonl")
    assert str(error.value).startswith("s.jsonl line 3: ")
    assert message in str(error.value)


def test_the_header_must_come_first():
    with pytest.raises(ScenarioError, match="line 2: the header"):
        parse_lines(['{"contact": ["x", "y"], "from": 0, "to": 1}', '{"time_scale": 5}'])


def test_a_missing_scenario_file_is_one_clear_error(tmp_path):
    with pytest.raises(ScenarioError, match="does not exist"):
        scenario.load(tmp_path / "nope.jsonl")


def test_first_build_installs_factory_firmware_and_later_builds_keep_user_files(tmp_path):
    image = tmp_path / "flash.img"
    first = flash.prepare(image, "virtual")
    assert first["created"] and image.stat().st_size == 2 * 1024 * 1024
    names = flash.list_files(image)
    assert {"main.py", "board.json", "hal_virtual.mpy", "tokenfw/app.mpy", "tokenfw/records.mpy"} <= set(names)
    assert not any(n.endswith(".py") and n != "main.py" for n in names)  # modules go on as bytecode
    # The token writes its own data, and an old firmware left a module that no longer exists.
    fs = flash.open_image(image)
    try:
        with fs.open("config.json", "w") as f:
            f.write('{"serial": "TT-00000001"}')
        with fs.open("tokenfw/app.mpy", "wb") as f:
            f.write(b"old firmware")
        with fs.open(".factory", "a") as f:
            f.write("tokenfw/retired.mpy\n")
        with fs.open("tokenfw/retired.mpy", "wb") as f:
            f.write(b"retired module")
    finally:
        flash.close_image(fs)
    kept = flash.prepare(image, "virtual", refresh=False)
    assert kept["updated"] == [] and flash.read_file(image, "tokenfw/app.mpy") == b"old firmware"
    refreshed = flash.prepare(image, "virtual")
    assert refreshed["created"] is False
    assert refreshed["updated"] == ["tokenfw/app.mpy"] and refreshed["removed"] == ["tokenfw/retired.mpy"]
    assert flash.read_file(image, "tokenfw/app.mpy") != b"old firmware"
    assert flash.read_file(image, "config.json") == b'{"serial": "TT-00000001"}'
    assert flash.prepare(image, "virtual")["updated"] == []  # nothing changed: nothing written


def test_an_image_of_the_wrong_size_or_without_littlefs_is_refused(tmp_path):
    short = tmp_path / "short.img"
    short.write_bytes(b"\xff" * 4096)
    with pytest.raises(flash.FlashImageError, match="not a 2097152-byte flash image"):
        flash.prepare(short, "virtual")
    blank = tmp_path / "blank.img"
    blank.write_bytes(b"\x00" * flash.IMAGE_BYTES)
    with pytest.raises(flash.FlashImageError, match="holds no littlefs filesystem"):
        flash.read_file(blank, "main.py")


def test_an_unknown_board_is_refused(tmp_path):
    with pytest.raises(flash.FlashImageError, match="board 'nonesuch' is unknown"):
        flash.prepare(tmp_path / "flash.img", "nonesuch")
    assert not (tmp_path / "flash.img").exists()


@pytest.mark.parametrize("board", ["virtual", "esp32-devkitc", "esp32-c3", "esp32-s3"])
def test_every_board_describes_chip_flash_pins_battery_radio_and_sourced_power(board):
    config = json.loads((BOARDS_DIR / board / "board.json").read_text())
    assert config["name"] == board and config["chip"] and config["hal"]
    assert config["flash"]["vfs_bytes"] == flash.IMAGE_BYTES and config["flash"]["block_size"] == flash.BLOCK_SIZE
    assert {"button", "battery_adc"} <= set(config["pins"])
    assert config["battery"]["divider"] > 0 and config["battery"]["full_mv"] > config["battery"]["empty_mv"]
    assert isinstance(config["radio"]["tx_power_dbm"], int)
    for figure in ("tx_ma", "rx_ma", "idle_ma", "light_sleep_ua", "deep_sleep_ua"):
        assert config["power"][figure] > 0
    assert config["sources"]
    if board != "virtual":
        assert config["hal"] == "tokenfw.hal_esp32"
        manifest = (BOARDS_DIR / board / "manifest.py").read_text()
        assert 'freeze("../../firmware", "tokenfw")' in manifest


def test_an_existing_image_without_littlefs_is_never_formatted_by_the_host(tmp_path):
    image = tmp_path / "flash.img"
    image.write_bytes(b"\x00" * flash.IMAGE_BYTES)  # a wiped or corrupted chip
    with pytest.raises(flash.FlashImageError, match="holds no readable littlefs filesystem; keep it"):
        flash.prepare(image, "virtual")
    assert image.read_bytes() == b"\x00" * flash.IMAGE_BYTES
    # Without a refresh the host leaves it to the token (which formats it at boot, as an ESP32).
    assert flash.prepare(image, "virtual", refresh=False)["updated"] == []
    assert image.read_bytes() == b"\x00" * flash.IMAGE_BYTES
