# Runs firmware test modules on MicroPython (or CPython) without pytest.
#
# usage: micropython mp_runner.py MODULE [MODULE ...]
# Each `test_*` function of each module runs in definition order; one JSON line per test:
#   {"module": ..., "test": ..., "ok": true|false, "error": "...", "heap_peak": N}
# The pytest side (tests/firmware/test_firmware_units.py) turns the lines into test results.
import gc
import json
import sys


def _tests_of(module):
    names = [n for n in dir(module) if n.startswith("test_")]
    names.sort()
    return [(n, getattr(module, n)) for n in names]


def _run_module(name):
    module = __import__(name)
    for test_name, fn in _tests_of(module):
        gc.collect()
        record = {"module": name, "test": test_name, "ok": True, "error": ""}
        try:
            fn()
        except Exception as error:  # report every failure, keep running the others
            record["ok"] = False
            record["error"] = "%s: %s" % (type(error).__name__, error)
            if hasattr(sys, "print_exception"):
                sys.print_exception(error)
        gc.collect()
        if hasattr(gc, "mem_alloc"):
            record["heap_in_use"] = gc.mem_alloc()
        print("MPTEST " + json.dumps(record))


for _name in sys.argv[1:]:
    _run_module(_name)
