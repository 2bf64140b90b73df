"""Test helpers for the virtual air: bytecode trees for MicroPython, air + token processes."""
from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

from host_tools import micropython
from host_tools.air.client import AirProcess
from host_tools.virtual.flash import mpy_cross

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
START_S = 1767225600  # 2026-01-01T00:00:00Z, a Thursday at midnight: interval boundaries align


def compile_tree(out: Path) -> Path:
    """tokenfw, the virtual bluetooth module and the test drivers as .mpy (as a deploy does:
    compiling on the token costs more heap than it has)."""
    sources = {p.relative_to(REPO / "firmware").as_posix(): p for p in (REPO / "firmware" / "tokenfw").rglob("*.py")}
    sources["bluetooth.py"] = REPO / "boards" / "virtual" / "bluetooth.py"
    for p in (HERE / "mp").glob("*.py"):
        sources[p.name] = p
    for name, source in sources.items():
        target = out / (name[:-3] + ".mpy")
        target.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([mpy_cross(), "-s", name, "-o", str(target), str(source)], check=True, capture_output=True)
    return out


def start_token(tree: Path, script: str, *args: str, log: Path, heap_bytes: int = micropython.ESP32_HEAP_BYTES) -> subprocess.Popen:
    env = dict(os.environ)
    env["MICROPYPATH"] = str(tree)
    argv = [micropython.interpreter(), "-X", f"heapsize={heap_bytes}", "-m", script, *args]
    return subprocess.Popen(argv, env=env, stdout=open(log, "wb"), stderr=subprocess.STDOUT, cwd=str(tree))


def json_lines(path: Path) -> list[dict]:
    out = []
    for line in path.read_text(errors="replace").splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
    return out


def wait_all(processes: list[subprocess.Popen], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    for proc in processes:
        remaining = max(0.1, deadline - time.monotonic())
        try:
            proc.wait(remaining)
        except subprocess.TimeoutExpired:
            for other in processes:
                other.kill()
            raise AssertionError(f"virtual token did not finish within {timeout_s} s")


__all__ = ["AirProcess", "START_S", "compile_tree", "start_token", "json_lines", "wait_all"]
