"""The stand-in radio's shared medium: an "air" directory that virtual tokens publish to.

Until the bumble-based virtual air exists, tokens that should hear each other share a folder:

    AIR/air.json          the world clock all tokens agree on:
                          {"start_s", "time_scale", "host_epoch_s", "fast_for_s"}; world
                          time = start_s + (host unix time - host_epoch_s) * time_scale for
                          the first fast_for_s world seconds (all of them when null), then
                          at 1x, so a scenario's accelerated day can end at "now" and stay there
    AIR/scenario.jsonl    the scenario the air plays (copied from the first token's --scenario)
    AIR/tokens/NAME.json  each token's pid and CURRENT advertisement (atomic rewrite)

The first token to join an air with no live tokens creates a fresh world clock (and plays the
scenario it was given, or none); later tokens adopt both. A scenario or time scale that
contradicts the running air is refused.
"""
from __future__ import annotations

import fcntl
import json
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from host_tools.errors import UsageError
from host_tools.virtual import scenario as scenario_module


@dataclass(frozen=True)
class World:
    start_s: float
    time_scale: float
    host_epoch_s: float
    fast_for_s: float | None = None

    def now(self, host_s: float | None = None) -> float:
        """World unix seconds at host time `host_s` (default: now)."""
        if host_s is None:
            host_s = time.time()
        elapsed = host_s - self.host_epoch_s
        if self.fast_for_s is None or elapsed * self.time_scale <= self.fast_for_s:
            return self.start_s + elapsed * self.time_scale
        return self.start_s + self.fast_for_s + (elapsed - self.fast_for_s / self.time_scale)

    def elapsed(self, host_s: float | None = None) -> float:
        """Seconds since the scenario start, in world time."""
        return self.now(host_s) - self.start_s


def write_atomic(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(temporary, "wb") as f:
        f.write(data)
    os.replace(temporary, path)


def pid_alive(pid) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def _locked(air: Path):
    air.mkdir(parents=True, exist_ok=True)
    (air / "tokens").mkdir(exist_ok=True)
    with open(air / ".lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def live_tokens(air: Path) -> dict[str, dict]:
    found = {}
    for entry in sorted((Path(air) / "tokens").glob("*.json")):
        data = _read_json(entry)
        if isinstance(data, dict) and pid_alive(data.get("pid")):
            found[entry.stem] = data
    return found


class Air:
    """One token's membership of an air directory."""

    def __init__(self, path: Path, name: str, world: World, scenario: scenario_module.Scenario):
        self.path = Path(path)
        self.name = name
        self.world = world
        self.scenario = scenario

    @classmethod
    def join(cls, path, name: str, scenario_file=None, time_scale: float | None = None,
             pid: int | None = None) -> "Air":
        path = Path(path)
        given = scenario_module.load(scenario_file) if scenario_file else None
        given_text = Path(scenario_file).read_bytes() if scenario_file else None
        with _locked(path):
            others = {n: d for n, d in live_tokens(path).items() if n != name}
            stored_scenario = path / "scenario.jsonl"
            air_json = _read_json(path / "air.json")
            if others and isinstance(air_json, dict):
                if given_text is not None and (
                        not stored_scenario.exists() or stored_scenario.read_bytes() != given_text):
                    raise UsageError(
                        f"air {path} is already playing another scenario for running tokens "
                        f"({', '.join(sorted(others))}); stop them first or use another --air")
                world = World(float(air_json["start_s"]), float(air_json["time_scale"]),
                              float(air_json["host_epoch_s"]), air_json.get("fast_for_s"))
                if time_scale is not None and time_scale != world.time_scale:
                    raise UsageError(
                        f"air {path} runs at time scale {world.time_scale:g}, not {time_scale:g}; "
                        "tokens sharing an air share one clock")
                scenario = scenario_module.load(stored_scenario) if stored_scenario.exists() \
                    else scenario_module.Scenario()
            else:
                # A new world: it plays the scenario given now, or none (a scenario from an
                # earlier run is not replayed behind the user's back).
                if given_text is not None:
                    write_atomic(stored_scenario, given_text)
                    scenario = given
                else:
                    stored_scenario.unlink(missing_ok=True)
                    scenario = scenario_module.Scenario()
                now = time.time()
                scale = time_scale or scenario.time_scale or 1.0
                start = scenario.start_s if scenario.start_s is not None else now
                world = World(start, scale, now, scenario.fast_for_s)
                write_atomic(path / "air.json", json.dumps(
                    {"start_s": world.start_s, "time_scale": world.time_scale,
                     "host_epoch_s": world.host_epoch_s, "fast_for_s": world.fast_for_s},
                    sort_keys=True).encode())
            member = cls(path, name, world, scenario)
            member.publish(None, 0, pid=pid)
        return member

    def _token_path(self, name: str) -> Path:
        return self.path / "tokens" / f"{name}.json"

    def publish(self, adv: bytes | None, interval_ms: int, pid: int | None = None) -> None:
        """Make `adv` this token's current advertisement (None: not advertising)."""
        self._pid = pid if pid is not None else getattr(self, "_pid", os.getpid())
        write_atomic(self._token_path(self.name), json.dumps({
            "name": self.name, "pid": self._pid, "adv": adv.hex() if adv else None,
            "interval_ms": interval_ms, "updated_s": self.world.now()}, sort_keys=True).encode())

    def leave(self) -> None:
        try:
            self._token_path(self.name).unlink()
        except FileNotFoundError:
            pass

    def advertisement_of(self, name: str) -> bytes | None:
        """The current advertisement of token `name`, or None (absent, stopped, silent).
        Read fresh every time: file timestamps are too coarse to tell two rewrites apart."""
        data = _read_json(self._token_path(name))
        if not isinstance(data, dict) or not isinstance(data.get("adv"), str) or not pid_alive(data.get("pid")):
            return None
        try:
            return bytes.fromhex(data["adv"])
        except ValueError:
            return None
