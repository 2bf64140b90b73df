"""Static API check: the firmware uses only what exists on MicroPython's ESP32 port.

mypy checks firmware/tokenfw against `micropython-esp32-stubs` (the ESP32 port's modules, with
`micropython-stdlib-stubs` replacing CPython's standard library), so a call such as
`time.monotonic()`, `bluetooth.BLE().gap_connect_foo()` or an import of `hmac` fails here long
before it fails on a token. Only errors that mean "this does not exist on the ESP32" count:
missing modules, attributes, names and keyword arguments. Plain typing complaints about the
untyped firmware are not this test's business.

The stub wheels are fetched once (exact pins below) into .venv/esp32-stubs with pip. They are
kept out of site-packages on purpose: they put a `requests` package of .pyi files and a
`pyproject.toml` at the top of site-packages, which would shadow real packages at run time.
"""
from __future__ import annotations

import ast
import re
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FIRMWARE = REPO / "firmware"
STUB_PINS = ["micropython-esp32-stubs==1.29.0.post1", "micropython-stdlib-stubs==1.29.0.post2"]
STUB_DIR = Path(sys.prefix) / "esp32-stubs"
API_CODES = {"attr-defined", "name-defined", "call-arg", "import-not-found", "import-untyped"}
# CPython stand-ins the firmware reaches only when the MicroPython module is missing.
CPYTHON_ONLY_MODULES = ("cryptography",)
# Reviewed exceptions: (file, message fragment) -> why it is not an ESP32 API use.
REVIEWED = {
    ("tokenfw/aes.py", '"aes" has no attribute "update"'):
        "the `cryptography` encryptor of the CPython backend, used only when cryptolib is missing",
}
# Real bugs the check found in modules this test's author does not own, reported to their
# owners: listed so `make test` stays green meanwhile, and reported as warnings on every run.
KNOWN_BUGS: dict[tuple[str, str], str] = {}
_LINE = re.compile(r"^(?P<file>[^:]+):(?P<line>\d+): error: (?P<message>.*)  \[(?P<code>[a-z-]+)\]$")


def esp32_stubs() -> Path:
    marker = STUB_DIR / ".pins"
    if marker.exists() and marker.read_text() == "\n".join(STUB_PINS):
        return STUB_DIR
    wheels = STUB_DIR / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(wheels), *STUB_PINS],
        capture_output=True, text=True, timeout=300,
    )
    if result.returncode != 0:
        pytest.fail(f"cannot fetch the ESP32 stubs ({' '.join(STUB_PINS)}): {result.stderr.strip()[-500:]}")
    for wheel in wheels.glob("*.whl"):
        with zipfile.ZipFile(wheel) as archive:
            archive.extractall(STUB_DIR)
    marker.write_text("\n".join(STUB_PINS))
    return STUB_DIR


def _fallback_lines(path: Path) -> set[int]:
    """Lines that run only on CPython: `except ImportError:` bodies, and what follows an
    `if hasattr(module, name): return ...` guard or sits in its `else`."""
    lines: set[int] = set()
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ExceptHandler) and node.type is not None:
            names = [n.id for n in ast.walk(node.type) if isinstance(n, ast.Name)]
            if "ImportError" in names:
                for stmt in node.body:
                    lines.update(range(stmt.lineno, (stmt.end_lineno or stmt.lineno) + 1))
        for field in ("body", "orelse", "finalbody"):
            block = getattr(node, field, None)
            if not isinstance(block, list):
                continue
            for i, stmt in enumerate(block):
                if (isinstance(stmt, ast.If) and isinstance(stmt.test, ast.Call)
                        and getattr(stmt.test.func, "id", None) == "hasattr"):
                    for other in stmt.orelse:
                        lines.update(range(other.lineno, (other.end_lineno or other.lineno) + 1))
                    if stmt.body and isinstance(stmt.body[-1], (ast.Return, ast.Raise)):
                        for after in block[i + 1:]:
                            lines.update(range(after.lineno, (after.end_lineno or after.lineno) + 1))
    return lines


def esp32_api_errors(sources: list[Path], root: Path = FIRMWARE) -> list[str]:
    stubs = esp32_stubs()
    env = {"MYPYPATH": f"{stubs}{':'}{FIRMWARE}", "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--custom-typeshed-dir", str(stubs), "--no-site-packages",
         "--python-version", "3.11", "--follow-imports=silent", "--check-untyped-defs",
         "--no-error-summary", "--show-error-codes", "--no-pretty", "--cache-dir", str(stubs / ".mypy_cache"),
         *[str(s.relative_to(root)) for s in sources]],
        capture_output=True, text=True, cwd=root, env=env, timeout=300,
    )
    fallbacks: dict[str, set[int]] = {}
    problems = []
    for line in result.stdout.splitlines():
        match = _LINE.match(line)
        if not match or match["code"] not in API_CODES or not match["file"].startswith("tokenfw/"):
            continue
        file, lineno, message = match["file"], int(match["line"]), match["message"]
        if match["code"].startswith("import") and any(f'"{m}' in message for m in CPYTHON_ONLY_MODULES):
            continue
        if any(f == file and fragment in message for f, fragment in REVIEWED):
            continue
        known = [why for (f, fragment), why in KNOWN_BUGS.items() if f == file and fragment in message]
        if known:
            warnings.warn(f"known firmware bug (reported): {line} -- {known[0]}")
            continue
        if file not in fallbacks:
            fallbacks[file] = _fallback_lines(root / file)
        if lineno in fallbacks[file]:
            continue
        problems.append(line)
    if result.returncode not in (0, 1):
        pytest.fail(f"mypy failed to run: {result.stderr.strip()[-1000:]}")
    return problems


def firmware_sources() -> list[Path]:
    return sorted(p for p in (FIRMWARE / "tokenfw").rglob("*.py"))


def test_the_firmware_uses_only_apis_that_exist_on_the_esp32_port():
    problems = esp32_api_errors(firmware_sources())
    assert not problems, "firmware uses APIs the ESP32 port does not have:\n" + "\n".join(problems)


def test_the_check_catches_a_cpython_only_api(tmp_path):
    # The check itself must bite: a module using CPython-only APIs is caught.
    bad = tmp_path / "tokenfw" / "probe.py"
    bad.parent.mkdir()
    bad.write_text("import time\nimport hmac\n\n\ndef f(ble):\n    return time.monotonic()\n")
    problems = esp32_api_errors([bad], root=tmp_path)
    text = "\n".join(problems)
    assert "hmac" in text and "monotonic" in text
