"""Run a real virtual token from a test: `tokentool virtual start` in a temporary state dir.

    import sys; sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # from tests/<dir>/
    from virtual_token import running_token

    def test_something(tmp_path):
        with running_token(tmp_path / "alice", name="alice") as token:
            print(token.pty)                       # open it with pyserial / your transport
            assert token.exec("print(1 + 1)") == "2"
            token.stop(); token.start()            # power off and on again: flash is kept

The token is the firmware on the heap-capped MicroPython unix port with a littlefs flash image
(`token.flash`), exactly as `tokentool virtual start` runs it. It is stopped when the block ends,
even when the test fails.
"""
from __future__ import annotations

import json
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

from host_tools.virtual import control, flash
from tokenfw import records

MPREMOTE = str(Path(sys.executable).with_name("mpremote"))


class VirtualToken:
    def __init__(self, state: Path, name: str, start_options: dict) -> None:
        self.state = Path(state)
        self.name = name
        self.start_options = start_options
        self.info: dict = {}

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self, **overrides) -> dict:
        options = dict(self.start_options, **overrides)
        self.info = control.start(name=self.name, state=self.state, **options)
        return self.info

    def stop(self) -> None:
        if control.read_info(self.state) is not None:
            control.stop(state=self.state)

    @property
    def running(self) -> bool:
        return control.read_info(self.state) is not None

    @property
    def pty(self) -> str:
        return self.info["pty"]

    @property
    def pid(self) -> int:
        return self.info["pid"]

    @property
    def flash(self) -> Path:
        return self.state / "flash.img"

    # -- talking to it -----------------------------------------------------------------------
    def mpremote(self, *args: str, timeout_s: float = 30, check: bool = True) -> subprocess.CompletedProcess:
        """Run `mpremote connect PTY resume ARGS...`, as a technician would."""
        result = subprocess.run([MPREMOTE, "connect", self.pty, "resume", *args],
                                capture_output=True, text=True, timeout=timeout_s)
        if check and result.returncode != 0:
            raise AssertionError(f"mpremote {' '.join(args)} failed ({result.returncode}):\n"
                                 f"{result.stdout}\n{result.stderr}")
        return result

    def exec(self, code: str, timeout_s: float = 30) -> str:
        """Run Python on the token (its REPL, via mpremote); returns its output, stripped."""
        return self.mpremote("exec", code, timeout_s=timeout_s).stdout.strip()

    def read_file(self, path: str) -> bytes | None:
        """A file from the flash image via littlefs-python (stop the token first for a
        consistent view; reading while it runs sees the last committed state)."""
        return flash.read_file(self.flash, path)

    def led(self) -> dict | None:
        try:
            return json.loads((self.state / "led.json").read_text())
        except (OSError, ValueError):
            return None

    def log(self) -> str:
        try:
            return (self.state / "supervisor.log").read_text()
        except OSError:
            return ""


def logged_encounters(image) -> list[records.Encounter]:
    """Every committed encounter record in a flash image's log, read with littlefs-python
    (stop the token first for a consistent view)."""
    found = []
    for name in flash.list_files(image):
        if name.startswith("log/") and name.endswith(".seg"):
            data = flash.read_file(image, name)
            first_seq = int(name[len("log/"):-len(".seg")])
            for index in range(len(data) // records.RECORD_SIZE):
                chunk = data[index * records.RECORD_SIZE:(index + 1) * records.RECORD_SIZE]
                found.append(records.decode(first_seq + index, chunk))
    return found


@contextmanager
def running_token(state, name: str = "token-1", **start_options):
    """Start a virtual token in `state` (keyword options as `control.start`), yield it, stop it."""
    token = VirtualToken(Path(state), name, start_options)
    token.start()
    try:
        yield token
    finally:
        token.stop()
