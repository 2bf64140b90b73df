"""The radio around a sync window: the sync advertisement gets an address of its own, and the
GAEN address never changes while its RPI stays (checked against what the virtual air saw)."""
from __future__ import annotations

import json
import subprocess

import pytest

from airlab import AirProcess, compile_tree
from host_tools import micropython


class WindowToken:
    def __init__(self, work):
        tree = compile_tree(work / "tree")
        self.air = AirProcess(work / "air.sock", time_scale=1.0, log_path=work / "air.log")
        env = dict(micropython.environment())
        env["MICROPYPATH"] = str(tree)
        self.proc = subprocess.Popen(
            [micropython.interpreter(), "-X", "heapsize=100K", "-m", "window_token", "win", self.air.socket_path],
            env=env, cwd=str(tree), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )

    def do(self, command: str) -> dict:
        self.proc.stdin.write(command.encode() + b"\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line.startswith(b"{"), line + self.proc.stdout.read(2000)
        mine = json.loads(line)
        seen = next(d for d in self.air.control({"op": "status"})["devices"] if d["name"] == "win")
        mine["air_address"] = seen["address"].replace(":", "").lower()
        mine["air_advertising"] = seen["advertising"]
        return mine

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(10)
        self.air.stop()


@pytest.fixture
def token(tmp_path):
    token = WindowToken(tmp_path)
    yield token
    token.close()


def test_a_window_without_rotation_leaves_the_token_silent_until_the_next_rpi(token):
    gaen = token.do("gaen 1")
    assert gaen["air_advertising"] and gaen["air_address"] == gaen["address"]
    window = token.do("open")
    assert window["air_advertising"] and window["address"] != gaen["address"]  # its own address
    closed = token.do("close")
    assert not closed["air_advertising"]  # RPI 1 does not come back under another address
    rotated = token.do("gaen 2")
    assert rotated["air_advertising"]
    assert rotated["address"] not in (gaen["address"], window["address"])
    assert rotated["rotations"] == 3  # GAEN 1, the window, GAEN 2: one address each


def test_a_rotation_during_the_window_goes_on_air_when_it_closes(token):
    first = token.do("gaen 1")
    window = token.do("open")
    during = token.do("gaen 2")  # the RPI rotates while a clinic is connected
    assert during["address"] == window["address"]  # the window's advertisement is untouched
    closed = token.do("close")
    assert closed["air_advertising"]
    assert closed["address"] not in (first["address"], window["address"])
    assert closed["air_address"] == closed["address"]
