"""Start, stop and list virtual tokens (the library under `tokentool virtual`).

State directory of one token (default ./state/virtual/NAME):

    flash.img        the 2 MiB littlefs flash image (kept between runs: the token's storage)
    lock             held (flock) by the running supervisor: one token per state directory
    token.json       {"pty", "state", "pid", "name", ...} while the token runs
    pty              the user-facing pty path while the token runs
    radio.sock       the virtual HAL's socket to the supervisor
    supervisor.log   what the supervisor did (boots, exits, errors)
    led.json         the last LED pattern the firmware showed
    button           create it to hold the button down; remove it to release
    battery_mv       battery voltage the firmware reads (default 4000)
    air/             the token's own air when no shared --air is given
"""
from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from host_tools import micropython
from host_tools.errors import TokenToolError, UsageError
from host_tools.virtual import flash
from host_tools.virtual.air import pid_alive
from host_tools.virtual.scenario import NAME_PATTERN
from host_tools.virtual.scenario import load as load_scenario

DEFAULT_ROOT = Path("state") / "virtual"
DEFAULT_NAME = "token-1"
START_TIMEOUT_S = 40.0
STOP_TIMEOUT_S = 10.0


class VirtualTokenError(TokenToolError):
    """A virtual token could not be started, stopped or reached."""


def default_state(name: str) -> Path:
    return DEFAULT_ROOT / name


def _check_name(name: str) -> None:
    if not NAME_PATTERN.match(name):
        raise UsageError(f"token name {name!r} must be letters, digits, '_', '.' or '-' (up to 32)")


def read_info(state: str | os.PathLike) -> dict | None:
    """The running token's token.json, or None when no live supervisor owns `state`."""
    path = Path(state) / "token.json"
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(info, dict) or not pid_alive(info.get("pid")) or not _lock_held(Path(state)):
        return None  # a stale file (a killed supervisor, perhaps a reused pid): nothing runs
    return info


def _lock_held(state: Path) -> bool:
    """True while a supervisor holds STATE/lock."""
    try:
        with open(state / "lock", "a+") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(lock, fcntl.LOCK_UN)
            return False
    except OSError:
        return False


def _lock(state: Path):
    lock = open(state / "lock", "a+")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        info = read_info(state) or {}
        who = f" {info['name']!r} (pid {info['pid']})" if info else ""
        raise VirtualTokenError(f"state directory {state} is in use by running virtual token{who}; "
                                "stop it first with `tokentool virtual stop`") from None
    return lock


def start(name: str = DEFAULT_NAME, state: str | os.PathLike | None = None, scenario=None,
          air=None, time_scale: float | None = None, clock: str = "set", board: str = "virtual",
          refresh_firmware: bool = True, cut_after_writes: int | None = None,
          rssi_noise_db: float | None = None, seed: int | None = None, compiled: bool = True) -> dict:
    """Start a virtual token in the background; returns its info (pty, state, pid, name, ...)
    once the interpreter has booted from the flash image."""
    _check_name(name)
    if time_scale is not None and not 0 < time_scale <= 10_000:
        raise UsageError("--time-scale must be above 0 and at most 10000")
    if clock not in ("set", "unset"):
        raise UsageError("--clock must be 'set' or 'unset'")
    if cut_after_writes is not None and cut_after_writes < 0:
        raise UsageError("--cut-after-writes must be 0 or more")
    state = Path(state if state is not None else default_state(name)).resolve()
    if scenario is not None:
        load_scenario(scenario)  # a bad line is reported here, with its number, before anything starts
        scenario = Path(scenario).resolve()
    board_config = flash.board_config(board)
    if board_config.get("hal") != "hal_virtual":
        raise UsageError(f"board {board!r} is real hardware (HAL {board_config.get('hal')!r}); "
                         "a virtual token needs a board whose HAL is hal_virtual")
    if rssi_noise_db is None:
        rssi_noise_db = float(board_config.get("radio", {}).get("rssi_noise_db", 2.0))
    micropython.interpreter()  # a clear error when it is missing
    try:
        state.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise VirtualTokenError(f"cannot create state directory {state}: {error.strerror}") from None
    air = Path(air).resolve() if air is not None else state / "air"
    lock = _lock(state)
    try:
        prepared = flash.prepare(state / "flash.img", board, refresh=refresh_firmware, compiled=compiled)
        read_end, write_end = os.pipe()
        # On an ESP32 the firmware is frozen: its bytecode runs from flash and costs no heap.
        # Here it is loaded from .mpy files into the heap, so the cap grows by what the
        # firmware's modules measurably take once imported.
        # In a bumble virtual air (TOKENTOOL_AIR) the `bluetooth` module, C on an ESP32, is
        # bytecode too.
        modules = micropython.firmware_modules() + [board_config["hal"]]
        if os.environ.get("TOKENTOOL_AIR") and (micropython.BOARDS_DIR / board / "bluetooth.py").exists():
            modules.append("bluetooth")
        heap_bytes = int(board_config.get("heap_bytes", micropython.ESP32_HEAP_BYTES)) \
            + micropython.loaded_bytecode_bytes(modules, micropython.BOARDS_DIR / board)
        command = [sys.executable, "-m", "host_tools.virtual.supervisor", "--state", str(state),
                   "--heap-bytes", str(heap_bytes),
                   "--name", name, "--board", board, "--air", str(air), "--clock", clock,
                   "--ready-fd", str(write_end), "--rssi-noise-db", str(rssi_noise_db)]
        if scenario is not None:
            command += ["--scenario", str(scenario)]
        if time_scale is not None:
            command += ["--time-scale", repr(float(time_scale))]
        if cut_after_writes is not None:
            command += ["--cut-after-writes", str(cut_after_writes)]
        if seed is not None:
            command += ["--seed", str(seed)]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [str(micropython.REPO_ROOT), str(micropython.FIRMWARE_DIR)] +
            ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
        with open(state / "supervisor.log", "ab") as log:
            try:
                process = subprocess.Popen(
                    command, stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=state, env=env,
                    pass_fds=(write_end, lock.fileno()), start_new_session=True)
            except OSError as error:
                raise VirtualTokenError(f"cannot start the supervisor: {error}") from None
            finally:
                os.close(write_end)
        answer = _wait_ready(read_end, process, state)
    finally:
        lock.close()  # the supervisor inherited the lock and holds it while it runs
    answer["flash_created"] = prepared["created"]
    answer["firmware_updated"] = prepared["updated"]
    return answer


def _wait_ready(read_end: int, process: subprocess.Popen, state: Path) -> dict:
    data = b""
    deadline = time.monotonic() + START_TIMEOUT_S
    try:
        import select

        while b"\n" not in data and time.monotonic() < deadline:
            ready, _, _ = select.select([read_end], [], [], 0.2)
            if ready:
                chunk = os.read(read_end, 4096)
                if not chunk:
                    break
                data += chunk
    finally:
        os.close(read_end)
    line = data.decode("utf-8", "replace").strip()
    if line.startswith("ready "):
        return json.loads(line[len("ready "):])
    if line.startswith("error "):
        process.wait(STOP_TIMEOUT_S)
        raise VirtualTokenError(line[len("error "):])
    if process.poll() is None:
        process.terminate()
    raise VirtualTokenError(f"the virtual token did not start within {START_TIMEOUT_S:.0f} s; "
                            f"see {state / 'supervisor.log'}")


def stop(state: str | os.PathLike | None = None, name: str = DEFAULT_NAME) -> dict:
    """Stop the token running from `state`; its flash image stays. Returns its last info."""
    state = Path(state if state is not None else default_state(name)).resolve()
    info = read_info(state)
    if info is None:
        raise VirtualTokenError(f"no virtual token is running from {state}")
    pid = info["pid"]
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while pid_alive(pid) and time.monotonic() < deadline:
        _reap_if_child(pid)
        time.sleep(0.05)
    if pid_alive(pid):
        os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)
        _reap_if_child(pid)
    return info


def _reap_if_child(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def list_tokens(root: str | os.PathLike = DEFAULT_ROOT) -> list[dict]:
    """Every token state directory under `root`: running ones with their pty and pid."""
    found = []
    root = Path(root)
    if not root.is_dir():
        return found
    for state in sorted(p for p in root.iterdir() if p.is_dir()):
        if not (state / "flash.img").exists() and not (state / "token.json").exists():
            continue
        info = read_info(state)
        if info is not None:
            found.append(dict(info, running=True))
        else:
            found.append({"name": state.name, "state": str(state.resolve()), "running": False,
                          "pty": None, "pid": None})
    return found

