"""Helpers for the sync tests: virtual tokens on real ptys, records written into them through
mpremote (the technician's tool, not a back door in the protocol), and tokentool run in-process."""
from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import serial

from host_tools import cli
from host_tools.virtual import control

REPO = Path(__file__).resolve().parents[2]
MPREMOTE = str(Path(sys.executable).with_name("mpremote"))


def clinic_identity(token: "VirtualToken", home: Path, serial: str = "TT-00C0FFEE") -> bytes:
    """Identity on the token and its auth key in the clinic keystore at `home`; returns the key."""
    from host_tools.keystore import Keystore, TokenSecrets

    key = bytes(range(32))
    token.write_identity(serial, key)
    keystore = Keystore(home / "keystore.sqlite")
    keystore.add(TokenSecrets(serial, key, None, "wearable", "private", -8, "virtual"))
    keystore.close()
    return key


class VirtualToken:
    def __init__(self, state: Path, name: str, clock: str = "set") -> None:
        self.state = state
        self.name = name
        info = control.start(name=name, state=state, clock=clock)
        self.clock = clock
        self.pty = info["pty"]
        self.info = info

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            control.stop(state=self.state)

    def power_cycle(self) -> None:
        """Unplug and plug the token: the supervisor stops, the flash image stays."""
        control.stop(state=self.state)
        self.info = control.start(name=self.name, state=self.state, clock=self.clock)
        self.pty = self.info["pty"]
        time.sleep(0.5)

    def restart_app(self) -> None:
        """What a technician does after a REPL session: a soft reset (Ctrl-D at the REPL). The
        unix port exits on it and the supervisor starts the interpreter again, as a board reboots."""
        boots = self.boots()
        with serial.Serial(self.pty, 115200, timeout=0.2) as port:
            port.write(b"\r\x03\x03\x02\r\x04")  # leave raw REPL if needed, then soft reset
            port.read(4096)
        deadline = time.monotonic() + 20
        while self.boots() <= boots:
            if time.monotonic() > deadline:
                raise AssertionError(f"virtual token {self.name} did not reboot")
            time.sleep(0.1)
        time.sleep(0.5)  # main.py starts after the boot line

    def boots(self) -> int:
        log = (self.state / "supervisor.log").read_text()
        return log.count("interpreter started")

    def mpremote(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run([MPREMOTE, "connect", self.pty, "resume", *args], capture_output=True, text=True,
                              timeout=timeout)

    def write_identity(self, serial: str, auth_key: bytes, seed: bytes | None = None, role: str = "wearable") -> None:
        """Give the token an identity the way a technician could at the REPL: edit /config.json
        with mpremote, then reboot. (PROVISION is tested on its own; this sets up the others.)"""
        identity = {"serial": serial, "role": role, "identity": "escrowed" if seed else "private",
                    "auth_key": auth_key.hex(), "tx_power_dbm": -8}
        if seed:
            identity["seed"] = seed.hex()
        code = ("import json\nfrom tokenfw import config\nc = config.load('/config.json', {}) or {}\n"
                "c.update(json.loads(%r))\nconfig.save('/config.json', c)\nprint('saved')\n" % json.dumps(identity))
        path = self.state / "identity.py"
        path.write_text(code)
        done = self.mpremote("run", str(path))
        assert "saved" in done.stdout, done.stdout + done.stderr
        self.power_cycle()

    def fill(self, count: int, first_seen: int | None = None, power_cycle: bool = True) -> None:
        """Append `count` encounter records to the token's flash log with the token's own Store,
        run on the token through mpremote; then power-cycle it (or soft-reset it) so the app
        runs again."""
        first_seen = int(time.time()) - 3600 if first_seen is None else first_seen
        script = FILL_SCRIPT % {"count": count, "first_seen": first_seen}
        path = self.state / "fill.py"
        path.write_text(script)
        done = self.mpremote("run", str(path), timeout=300)
        assert "filled" in done.stdout, done.stdout + done.stderr
        if power_cycle:
            self.power_cycle()
        else:
            self.restart_app()  # a soft reset keeps the RTC, as on a board


# Records carry every byte value the framing must escape, so the dump exercises the stuffing.
FILL_SCRIPT = """
import gc
from tokenfw.store import Store
from tokenfw.records import Encounter
gc.collect()
s = Store("/log")
base = s.next_seq
for i in range(%(count)d):
    k = base + i
    s.append(Encounter(k.to_bytes(4, "little") + b"\\x03\\xc0\\xdb\\x1c\\x04\\x11\\x13\\x1a" + bytes(4),
                       b"\\xdb\\xdd\\xc0\\x03", %(first_seen)d + k, 60 + (k %% 7), 3, -50, -61, 0))
s.commit()
print("filled", %(count)d, s.next_seq)
"""


def run_tokentool(*args: str) -> tuple[int, str, str]:
    """tokentool in-process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli.main(list(args))
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 2
    return code, out.getvalue(), err.getvalue()


def tokentool_json(*args: str) -> dict:
    code, out, err = run_tokentool(*args, "--json")
    assert code == 0, err
    return json.loads(out)
