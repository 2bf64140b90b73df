"""Firmware unit tests, run under both interpreters.

The test modules in tests/firmware/mp/ are plain MicroPython-compatible code (no pytest). Each is
run once on the real, heap-capped MicroPython unix port and once on CPython; every `test_*`
function becomes one pytest result per interpreter.
"""
from __future__ import annotations

import functools
import importlib
import json
import sys
from pathlib import Path

import pytest

from host_tools import micropython

MP_TEST_DIR = Path(__file__).parent / "mp"
RUNNER = Path(__file__).parent / "mp_runner.py"
VIRTUAL_BOARD = micropython.BOARDS_DIR / "virtual"


def _collect() -> list[tuple[str, str]]:
    cases = []
    for path in sorted(MP_TEST_DIR.glob("test_*.py")):
        source = path.read_text()
        for line in source.splitlines():
            if line.startswith("def test_"):
                cases.append((path.stem, line[4:line.index("(")]))
    return cases


CASES = _collect()


@functools.lru_cache(maxsize=None)
def _micropython_results(module: str) -> dict[str, dict]:
    done = micropython.run(RUNNER, module, extra_paths=(MP_TEST_DIR, VIRTUAL_BOARD), cwd=MP_TEST_DIR)
    results = {}
    for line in done.stdout.splitlines():
        if line.startswith("MPTEST "):
            record = json.loads(line[len("MPTEST "):])
            results[record["test"]] = record
    results["__output__"] = {"stdout": done.stdout[-4000:], "stderr": done.stderr[-4000:]}
    return results


@pytest.mark.parametrize("module,test", CASES, ids=[f"{m}::{t}" for m, t in CASES])
def test_on_micropython(module: str, test: str) -> None:
    results = _micropython_results(module)
    record = results.get(test)
    if record is None:
        output = results["__output__"]
        pytest.fail(f"{module}.{test} did not run on MicroPython:\n{output['stdout']}\n{output['stderr']}")
    assert record["ok"], f"{module}.{test} failed on MicroPython: {record['error']}"


@pytest.mark.parametrize("module,test", CASES, ids=[f"{m}::{t}" for m, t in CASES])
def test_on_cpython(module: str, test: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(VIRTUAL_BOARD))
    monkeypatch.syspath_prepend(str(MP_TEST_DIR))
    monkeypatch.chdir(MP_TEST_DIR)
    getattr(importlib.import_module(module), test)()
