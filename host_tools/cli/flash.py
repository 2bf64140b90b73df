"""`tokentool flash --port P --firmware FILE.bin`: put MicroPython on tokens with esptool:
detect the chip, erase the flash, write the image at the chip's address, verify it."""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

from host_tools.cli.output import add_json_flag
from host_tools.cli.tokens import Reporter, add_port_argument, run_on_ports
from host_tools.errors import TokenToolError, UsageError

# Where the MicroPython image starts (the second-stage bootloader's address) per chip family.
_ADDRESS = {"esp32": 0x1000, "esp32s2": 0x1000, "esp32s3": 0x0, "esp32c3": 0x0, "esp32c6": 0x0, "esp32h2": 0x0}
_ESP_IMAGE_MAGIC = 0xE9
_MAX_IMAGE_BYTES = 4 * 1024 * 1024


class FlashError(TokenToolError):
    pass


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "flash", help="flash MicroPython onto tokens (esptool: detect, erase, write, verify)",
        description="Flash a MicroPython firmware image onto ESP32 tokens with esptool. This erases "
                    "everything on the token, its records included: sync it first.")
    add_port_argument(parser)
    parser.add_argument("--firmware", required=True, metavar="FILE.bin", help="MicroPython firmware image")
    parser.add_argument("--flash-baud", type=int, default=460800, help="baud rate while flashing (default 460800)")
    parser.add_argument("--chip", default="auto", help="chip type (default: detect)")
    add_json_flag(parser)
    parser.set_defaults(handler=_flash)


def check_image(path: Path) -> bytes:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UsageError(f"firmware file {path} does not exist") from None
    except OSError as error:
        raise UsageError(f"cannot read firmware file {path}: {error.strerror or error}") from None
    if not data or data[0] != _ESP_IMAGE_MAGIC:
        raise UsageError(f"{path} is not an ESP32 firmware image (it must start with byte 0xE9); "
                         "download the .bin for your board from micropython.org")
    if len(data) > _MAX_IMAGE_BYTES:
        raise UsageError(f"{path} is {len(data)} bytes, larger than a 4 MB token's flash")
    return data


def _esptool(*args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "esptool", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=600)


def detect_chip(port: str, baud: int) -> str:
    done = _esptool("--port", port, "--baud", str(baud), "chip-id")
    match = re.search(r"Chip (?:is|type:)\s*(ESP32[-\w]*)", done.stdout) or re.search(r"Detecting chip type\.*\s*(ESP32[-\w]*)", done.stdout)
    if done.returncode != 0 or not match:
        raise FlashError(f"no ESP32 bootloader answered on {port}: hold the token's BOOT button while plugging it "
                         "in, check the cable (a charge-only cable has no data lines), and try again")
    return _family(match.group(1))


def _family(name: str) -> str:
    name = name.lower().replace("-", "")
    for family in sorted(_ADDRESS, key=len, reverse=True):
        if name.startswith(family):
            return family
    raise FlashError(f"chip {name} is not a supported token chip ({', '.join(_ADDRESS)})")


def flash_port(port: str, args: argparse.Namespace, image: Path, reporter: Reporter) -> dict:
    reporter.stage("detecting chip")
    chip = _family(args.chip) if args.chip != "auto" else detect_chip(port, args.flash_baud)
    address = _ADDRESS[chip]
    base = ["--port", port, "--chip", chip, "--baud", str(args.flash_baud)]
    reporter.stage("erasing")
    done = _esptool(*base, "erase-flash")
    if done.returncode != 0:
        raise FlashError(f"erasing the flash of the token on {port} failed: {_last_line(done)}; try again")
    reporter.stage("writing")
    done = _esptool(*base, "write-flash", hex(address), str(image))
    if done.returncode != 0:
        raise FlashError(f"writing {image.name} to the token on {port} failed: {_last_line(done)}; flash it again")
    reporter.stage("verifying")
    done = _esptool(*base, "verify-flash", hex(address), str(image))
    if done.returncode != 0:
        raise FlashError(f"the image on the token on {port} does not match {image.name}: {_last_line(done)}; flash it again")
    return {"chip": chip, "address": hex(address), "bytes": image.stat().st_size, "firmware": str(image)}


def _last_line(done: subprocess.CompletedProcess) -> str:
    lines = [line.strip() for line in (done.stderr + done.stdout).splitlines() if line.strip()]
    return lines[-1][:160] if lines else f"esptool exited with {done.returncode}"


def _flash(args: argparse.Namespace) -> int:
    image = Path(args.firmware)
    check_image(image)
    return run_on_ports(
        args, lambda port, reporter: flash_port(port, args, image, reporter), title="flash",
        sentence=lambda r: (f"{r['port']}: flashed {Path(r['firmware']).name} ({r['bytes']} bytes) onto an "
                            f"{r['chip'].upper()} at {r['address']} and verified it; next: tokentool deploy"),
        columns=[("chip", "chip"), ("bytes", "bytes")])
