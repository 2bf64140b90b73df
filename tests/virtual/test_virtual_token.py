"""The virtual token behaves like a USB-connected ESP32 token: it starts in the background with
its console on a pty, mpremote works against it, its flash persists, it reboots when the
interpreter exits, and tokens sharing an air hear each other as the scenario says."""
from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from host_tools import micropython

from host_tools.virtual import control, flash
from virtual_token import running_token

TOKENTOOL = str(Path(sys.executable).with_name("tokentool"))
REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.timeout(120)


def tokentool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([TOKENTOOL, *args], capture_output=True, text=True, timeout=60)


def test_start_prints_pty_and_state_as_json_and_stop_ends_it(tmp_path):
    state = tmp_path / "tok"
    started = tokentool("virtual", "start", "--name", "tok", "--state", str(state), "--json")
    assert started.returncode == 0, started.stderr
    info = json.loads(started.stdout)
    try:
        assert info["state"] == str(state.resolve())
        assert stat.S_ISCHR(os.stat(info["pty"]).st_mode)
        assert (state / "pty").read_text().strip() == info["pty"]
        on_disk = json.loads((state / "token.json").read_text())
        assert {k: on_disk[k] for k in ("pty", "state", "pid", "name")} == \
            {k: info[k] for k in ("pty", "state", "pid", "name")}
        os.kill(info["pid"], 0)  # the supervisor runs in the background
        listed = json.loads(tokentool("virtual", "list", "--root", str(tmp_path), "--json").stdout)
        assert [(t["name"], t["running"], t["pty"]) for t in listed["tokens"]] == [("tok", True, info["pty"])]
    finally:
        stopped = tokentool("virtual", "stop", "--state", str(state), "--json")
    assert stopped.returncode == 0, stopped.stderr
    assert json.loads(stopped.stdout)["stopped"] is True
    assert not (state / "token.json").exists()
    with pytest.raises(ProcessLookupError):
        os.kill(info["pid"], 0)
    assert (state / "flash.img").stat().st_size == flash.IMAGE_BYTES
    again = tokentool("virtual", "stop", "--state", str(state))
    assert again.returncode != 0 and again.stderr.startswith("tokentool: no virtual token is running")


def test_mpremote_exec_and_fs_ls_work_against_a_running_token(tmp_path):
    with running_token(tmp_path / "tok") as token:
        assert token.exec("import sys; print(sys.implementation.name, 6 * 7)") == "micropython 42"
        listing = token.mpremote("fs", "ls", ":").stdout
        names = {line.split()[-1] for line in listing.splitlines()[1:] if line.strip()}
        assert {"board.json", "main.py", "tokenfw/", "hal_virtual.mpy"} <= names
        # The heap is capped like an ESP32 without PSRAM (100 KB), plus the heap the firmware's
        # modules take once loaded, which an ESP32 build keeps frozen in flash.
        heap = int(token.exec("import gc; gc.collect(); print(gc.mem_free() + gc.mem_alloc())"))
        loaded = micropython.loaded_bytecode_bytes(micropython.firmware_modules() + ["hal_virtual"],
                                                   micropython.BOARDS_DIR / "virtual")
        files = sum(len(token.read_file(name)) for name in
                    token.read_file(".factory").decode().split() if name.endswith(".mpy"))
        assert loaded > files  # loaded bytecode costs more RAM than its file's size
        assert token.info["heap_bytes"] == 100 * 1024 + loaded
        assert 0.95 * token.info["heap_bytes"] <= heap <= token.info["heap_bytes"]


def test_a_file_written_on_the_token_survives_stop_and_start_and_littlefs_python_reads_it(tmp_path):
    with running_token(tmp_path / "tok") as token:
        token.exec("f = open('/notes.txt', 'w'); f.write('kept across power cycles'); f.close()")
        token.stop()
        # An independent littlefs implementation reads the image the firmware wrote.
        assert token.read_file("notes.txt") == b"kept across power cycles"
        assert token.read_file("board.json") == (REPO / "boards/virtual/board.json").read_bytes()
        token.start()
        assert token.exec("print(open('/notes.txt').read())") == "kept across power cycles"
        assert token.info["flash_created"] is False


def test_the_interpreter_exiting_is_a_soft_reset_that_keeps_the_rtc(tmp_path):
    with running_token(tmp_path / "tok") as token:
        set_clock = ("import json, hal_virtual; b = hal_virtual.open_board(json.load(open('/board.json')));"
                     " b.rtc.set_seconds(1000000000); print(b.rtc.seconds())")
        assert token.exec(set_clock) == "1000000000"
        token.mpremote("exec", "import sys; sys.exit()", check=False)
        deadline = time.monotonic() + 10
        while "boot 2" not in token.log() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "boot 2" in token.log()
        read_clock = ("import json, hal_virtual; b = hal_virtual.open_board(json.load(open('/board.json')));"
                      " print(b.rtc.seconds())")
        assert 1000000000 <= int(token.exec(read_clock)) < 1000000030
        assert token.running


def test_clock_unset_starts_the_rtc_at_2000_like_a_fresh_esp32(tmp_path):
    with running_token(tmp_path / "tok", clock="unset") as token:
        seconds = int(token.exec("import json, hal_virtual; b = hal_virtual.open_board("
                                 "json.load(open('/board.json'))); print(b.rtc.seconds())"))
        assert 946684800 <= seconds < 946684800 + 60


def test_a_state_dir_in_use_is_refused_with_one_clear_line(tmp_path):
    with running_token(tmp_path / "tok", name="tok") as token:
        second = tokentool("virtual", "start", "--name", "other", "--state", str(token.state))
        assert second.returncode == 1
        assert second.stderr.count("\n") == 1
        assert "is in use by running virtual token 'tok'" in second.stderr
        assert token.exec("print('still here')") == "still here"


def test_a_bad_scenario_line_is_reported_with_its_number_and_nothing_starts(tmp_path):
    scenario = tmp_path / "bad.jsonl"
    scenario.write_text('{"start": 1767225600, "time_scale": 10}\n'
                        '{"contact": ["alice", "bob"], "from": 0, "to": 60, "rssi": -60}\n'
                        '\n'
                        '{"contact": ["alice", "bob"], "from": 90, "to": 30}\n')
    result = tokentool("virtual", "start", "--state", str(tmp_path / "tok"), "--scenario", str(scenario))
    assert result.returncode == 2
    assert result.stderr == f"tokentool: {scenario} line 4: 'to' is before 'from'\n"
    assert not (tmp_path / "tok" / "token.json").exists()


ALICE_ADV = "02011a03036ffd17166ffd" + "a1" * 16 + "b2" * 4
PHONE_ADV = "02011a03036ffd17166ffd" + "c3" * 16 + "d4" * 4

LISTEN = """
import json, time, hal_virtual
b = hal_virtual.open_board(json.load(open('/board.json')))
b.radio.start_scan(800)
heard = []
while b.radio.scanning():
    time.sleep_ms(100)
    b.radio.take_reports(lambda data, rssi: heard.append((data.hex(), rssi)))
b.radio.take_reports(lambda data, rssi: heard.append((data.hex(), rssi)))
print(json.dumps(heard))
"""


def test_tokens_in_contact_hear_each_others_current_advertisement(tmp_path):
    scenario = tmp_path / "meet.jsonl"
    scenario.write_text(
        '{"start": "2026-03-02T08:00:00Z"}\n'
        '{"contact": ["alice", "bob"], "from": 0, "to": 3600, "rssi": -60}\n'
        '{"contact": ["carol", "bob"], "from": 7200, "to": 7300, "rssi": -50}\n'
        f'{{"hear": "bob", "at": 0, "adv": "{PHONE_ADV}", "rssi": -80}}\n')
    air = tmp_path / "air"
    with running_token(tmp_path / "alice", name="alice", scenario=scenario, air=air) as alice, \
            running_token(tmp_path / "bob", name="bob", air=air, seed=7) as bob:
        alice.exec("import json, hal_virtual; b = hal_virtual.open_board(json.load(open('/board.json')));"
                   f" b.radio.advertise(bytes.fromhex('{ALICE_ADV}'), 250)")
        heard = json.loads(bob.exec(LISTEN))
        from_alice = [rssi for data, rssi in heard if data == ALICE_ADV]
        from_phone = [rssi for data, rssi in heard if data == PHONE_ADV]
        assert len(from_alice) >= 2  # she advertises every 250 ms through an 800 ms window
        assert all(-75 <= rssi <= -45 for rssi in from_alice)
        assert from_phone == [-80] or (len(from_phone) == 1 and -95 <= from_phone[0] <= -65)
        assert {data for data, _ in heard} == {ALICE_ADV, PHONE_ADV}  # carol is not near yet
        # Both agree on world time: the scenario start, shared through the air.
        clock = "import json, hal_virtual; print(hal_virtual.open_board(json.load(open('/board.json'))).rtc.seconds())"
        start = 1772438400  # 2026-03-02T08:00:00Z
        assert abs(int(alice.exec(clock)) - int(bob.exec(clock))) <= 2
        assert start <= int(bob.exec(clock)) < start + 120
        # Once alice stops advertising, bob hears only silence.
        alice.exec("import json, hal_virtual; hal_virtual.open_board(json.load(open('/board.json')))"
                   ".radio.stop_advertising()")
        assert json.loads(bob.exec(LISTEN)) == []


def test_a_shared_air_refuses_a_different_time_scale(tmp_path):
    air = tmp_path / "air"
    with running_token(tmp_path / "a", name="a", air=air, time_scale=5):
        with pytest.raises(control.TokenToolError, match="time scale 5, not 2"):
            control.start(name="b", state=tmp_path / "b", air=air, time_scale=2)
        assert not (tmp_path / "b" / "token.json").exists()


def test_injected_power_cut_kills_the_chip_and_the_token_cold_boots_with_its_files(tmp_path):
    with running_token(tmp_path / "tok") as token:
        token.exec("import blockdev; chip = blockdev.active_chip; chip.cut_after_writes = chip.writes + 12")
        token.mpremote("exec", "--no-follow",
                       "for i in range(40):\n f = open('/f%d' % i, 'w'); f.write('x' * 100); f.close()")
        deadline = time.monotonic() + 10
        while "boot 2" not in token.log() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "power cut injected" in token.log() and "boot 2" in token.log()
        survived = json.loads(token.exec(
            "import os, json; names = [n for n in os.listdir('/') if n.startswith('f')]\n"
            "print(json.dumps({n: open('/' + n).read() for n in names}))"))
        assert 0 < len(survived) < 40  # some files were closed before power failed, not all
        assert all(content == "x" * 100 for content in survived.values())  # none torn
        assert token.exec("f = open('/after', 'w'); f.write('ok'); f.close(); print(open('/after').read())") == "ok"
        seconds = int(token.exec("import json, hal_virtual; print(hal_virtual.open_board("
                                 "json.load(open('/board.json'))).rtc.seconds())"))
        assert seconds < 946684800 + 60  # power loss reset the RTC to 2000-01-01


def test_a_missing_micropython_interpreter_is_one_clear_line_and_creates_nothing(tmp_path, monkeypatch, capsys):
    from host_tools import cli

    monkeypatch.setattr(sys, "executable", str(tmp_path / "bin" / "python"))
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    assert cli.main(["virtual", "start", "--state", str(tmp_path / "tok")]) == 1
    assert capsys.readouterr().err == ("tokentool: the micropython interpreter is missing; "
                                       "run `make test` or `make demo` once to install it\n")
    assert not (tmp_path / "tok").exists()


def test_cut_after_writes_at_start_cold_boots_once_and_the_token_runs_on(tmp_path):
    result = tokentool("virtual", "start", "--state", str(tmp_path / "tok"), "--cut-after-writes", "0", "--json")
    assert result.returncode == 0, result.stderr
    token_state = tmp_path / "tok"
    try:
        log = token_state / "supervisor.log"
        deadline = time.monotonic() + 15
        while "boot 2" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        text = log.read_text()
        assert "power cut injected" in text and "boot 2" in text and "boot 3" not in text
        pty = json.loads(result.stdout)["pty"]
        listing = subprocess.run([str(Path(sys.executable).with_name("mpremote")), "connect", pty, "resume",
                                  "exec", "import os; print(sorted(os.listdir('/')))"],
                                 capture_output=True, text=True, timeout=30)
        assert "main.py" in listing.stdout, listing.stdout + listing.stderr
    finally:
        tokentool("virtual", "stop", "--state", str(token_state))


def test_a_real_hardware_board_cannot_be_started_as_a_virtual_token(tmp_path):
    result = tokentool("virtual", "start", "--state", str(tmp_path / "tok"), "--board", "esp32-c3")
    assert result.returncode == 2
    assert result.stderr.startswith("tokentool: board 'esp32-c3' is real hardware")
    assert not (tmp_path / "tok").exists()


ECHO = """
import json, hal_virtual
c = hal_virtual.open_board(json.load(open('/board.json'))).console
c.write(b'READY\\n')
got = 0
while got < %d:
    c.wait(1000)
    data = c.read_available()
    got += len(data)
    c.write(data)
"""


def test_the_console_is_binary_transparent_except_for_ctrl_c(tmp_path):
    import select
    import tty

    payload = bytes(b for b in range(256) if b != 3) * 8  # 0x03 is KeyboardInterrupt, as on a board

    def read_until(fd, done, deadline):
        data = b""
        while not done(data) and time.monotonic() < deadline:
            if select.select([fd], [], [], 0.2)[0]:
                data += os.read(fd, 4096)
        return data

    with running_token(tmp_path / "tok") as token:
        # Hold the port open first: output written while no one has it open is dropped.
        fd = os.open(token.pty, os.O_RDWR | os.O_NOCTTY)
        try:
            tty.setraw(fd)
            time.sleep(0.2)  # the bridge notices the open port within 50 ms
            token.mpremote("exec", "--no-follow", ECHO % len(payload))
            deadline = time.monotonic() + 20
            seen = read_until(fd, lambda data: b"READY\n" in data, deadline)
            assert b"READY\n" in seen
            os.write(fd, payload)
            echoed = read_until(fd, lambda data: len(data) >= len(payload), deadline)
        finally:
            os.close(fd)
        assert echoed[:len(payload)] == payload  # then the raw REPL's end-of-output markers


def test_the_virtual_radio_is_the_boards_adapter_rotating_addresses_and_ignoring_non_gaen(tmp_path):
    scenario = tmp_path / "junk.jsonl"
    # Heard 8 s after boot: by then mpremote has stopped the app, whose own first scan window
    # (any time in its first 21 s) would otherwise take the one report before the REPL's radio.
    scenario.write_text('{"hear": "tok", "at": 8, "to": 3600, "adv": "0201060909546f6b656e", "rssi": -50}\n')
    with running_token(tmp_path / "tok", name="tok", scenario=scenario) as token:
        result = json.loads(token.exec(
            "import json, time, hal_virtual\n"
            "r = hal_virtual.open_board(json.load(open('/board.json'))).radio\n"
            f"r.advertise(bytes.fromhex('{ALICE_ADV}'), 250); first = r.address\n"
            f"r.advertise(bytes.fromhex('{ALICE_ADV}'), 250); second = r.address\n"
            "r.start_scan(20000)\n"
            "heard = []\n"
            "while r.scanning() and not r.ignored:\n"
            "    time.sleep_ms(50); r.take_reports(lambda d, rssi: heard.append(d))\n"
            "print(json.dumps([first.hex(), second.hex(), r.ignored, len(heard)]))"))
        first, second, ignored, heard = result
        assert first != second and len(first) == 12  # a new random address with every identifier
        assert int(first[:2], 16) & 0xC0 == 0  # non-resolvable private address
        assert (ignored, heard) == (1, 0)  # a non-GAEN advertisement is counted, not logged


def test_a_killed_supervisor_leaves_nothing_that_blocks_the_next_start(tmp_path):
    import signal

    with running_token(tmp_path / "tok") as token:
        token.exec("f = open('/kept', 'w'); f.write('yes'); f.close()")
        os.kill(token.pid, signal.SIGKILL)  # no clean stop: token.json stays behind
        deadline = time.monotonic() + 5
        while token.running and time.monotonic() < deadline:
            try:
                os.waitpid(token.pid, os.WNOHANG)
            except ChildProcessError:
                pass
            time.sleep(0.05)
        assert (token.state / "token.json").exists() and not token.running
        stale = tokentool("virtual", "stop", "--state", str(token.state))
        assert stale.returncode == 1 and "no virtual token is running" in stale.stderr
        token.start()
        assert token.exec("print(open('/kept').read())") == "yes"


def test_an_erased_chip_is_formatted_by_the_token_at_boot_like_an_esp32(tmp_path):
    state = tmp_path / "tok"
    state.mkdir()
    (state / "flash.img").write_bytes(b"\xff" * flash.IMAGE_BYTES)  # erased flash, no filesystem
    refused = tokentool("virtual", "start", "--state", str(state))
    assert refused.returncode == 1 and "holds no readable littlefs filesystem" in refused.stderr
    with running_token(state, refresh_firmware=False) as token:
        assert token.exec("import os; print(os.listdir('/'))") == "[]"  # formatted, empty, REPL
        token.exec("f = open('/x', 'w'); f.write('1'); f.close()")
        token.stop()
        assert token.read_file("x") == b"1"


def test_a_state_path_too_long_for_a_unix_socket_still_works(tmp_path):
    state = tmp_path / ("long-directory-name-" * 6) / "tok"  # sun_path holds only 108 bytes
    assert len(str(state / "radio.sock")) > 108
    with running_token(state) as token:
        assert token.exec("import json, hal_virtual; b = hal_virtual.open_board(json.load(open('/board.json')));"
                          " b.led.show('ok'); print(b.button.pressed())") == "False"
        assert token.led()["pattern"] == "ok"
        (state / "button").touch()
        assert token.exec("import json, hal_virtual; print(hal_virtual.open_board("
                          "json.load(open('/board.json'))).button.pressed())") == "True"


def test_time_scale_speeds_up_the_rtc_ticks_sleeps_and_console_waits(tmp_path):
    with running_token(tmp_path / "tok", time_scale=100) as token:
        result = json.loads(token.exec(
            "import json, time, hal_virtual\n"
            "b = hal_virtual.open_board(json.load(open('/board.json')))\n"
            "t0 = time.ticks_ms(); s0 = b.rtc.seconds(); k0 = b.rtc.ticks_ms()\n"
            "b.sleep_ms(20000); b.console.wait(30000)\n"
            "host_ms = time.ticks_diff(time.ticks_ms(), t0)\n"
            "print(json.dumps([host_ms, b.rtc.seconds() - s0, (b.rtc.ticks_ms() - k0) & 0x3FFFFFFF]))"))
        host_ms, world_s, world_ms = result
        assert 450 <= host_ms < 2000  # 50 world seconds took about half a host second
        assert world_ms >= 49_000 and abs(world_ms - host_ms * 100) <= 2_000  # ticks run 100x
        assert abs(world_s - world_ms / 1000) <= 1.5  # the RTC runs with them
