"""Where devices stand in the virtual air and what signal strength they hear from each other.

RSSI follows the log-distance path-loss model with log-normal shadowing:

    rssi = rssi_at_1m + tx_offset_db - 10 * exponent * log10(max(d, 0.1) / 1 m) + N(0, noise_db)

and a report whose RSSI falls below `sensitivity_dbm` is lost, as on a real receiver. Positions
come from a scenario file: a device stands still (`"at": [x, y]`) or follows a track of
`[t_s, x, y]` points (token seconds since the air started), linearly interpolated and held at
both ends. A device the scenario does not name stands at the origin.

Scenario JSON (every field optional):

    {"time_scale": 60,
     "path_loss": {"rssi_at_1m": -59, "exponent": 2.2, "noise_db": 4, "sensitivity_dbm": -100},
     "devices": {"alice": {"at": [0, 0]},
                 "bob": {"track": [[0, 1, 0], [900, 1, 0], [960, 50, 0]]},
                 "market": {"at": [0, 2], "tx_offset_db": 6}}}
"""
from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from host_tools.errors import UsageError

_MAX_TIME_SCALE = 100_000.0


@dataclass(frozen=True)
class PathLoss:
    rssi_at_1m: float = -59.0
    exponent: float = 2.2
    noise_db: float = 4.0
    sensitivity_dbm: float = -100.0

    def mean_rssi(self, distance_m: float, tx_offset_db: float = 0.0) -> float:
        return self.rssi_at_1m + tx_offset_db - 10.0 * self.exponent * math.log10(max(distance_m, 0.1))

    def sample(self, distance_m: float, rng: random.Random, tx_offset_db: float = 0.0) -> int | None:
        """One received RSSI in dBm (clamped to the HCI range), or None when it is lost."""
        value = self.mean_rssi(distance_m, tx_offset_db) + rng.gauss(0.0, self.noise_db)
        if value < self.sensitivity_dbm:
            return None
        return max(-127, min(20, round(value)))


@dataclass(frozen=True)
class Placement:
    track: tuple[tuple[float, float, float], ...]  # (t_s, x_m, y_m), sorted by t_s
    tx_offset_db: float = 0.0

    def position(self, t_s: float) -> tuple[float, float]:
        points = self.track
        if t_s <= points[0][0]:
            return points[0][1], points[0][2]
        for (t0, x0, y0), (t1, x1, y1) in zip(points, points[1:]):
            if t_s <= t1:
                f = (t_s - t0) / (t1 - t0) if t1 > t0 else 1.0
                return x0 + (x1 - x0) * f, y0 + (y1 - y0) * f
        return points[-1][1], points[-1][2]


ORIGIN = Placement(track=((0.0, 0.0, 0.0),))


@dataclass
class Scenario:
    time_scale: float = 1.0
    path_loss: PathLoss = field(default_factory=PathLoss)
    devices: dict[str, Placement] = field(default_factory=dict)

    def placement(self, name: str) -> Placement:
        return self.devices.get(name, ORIGIN)

    def distance_m(self, a: str, b: str, t_s: float) -> float:
        ax, ay = self.placement(a).position(t_s)
        bx, by = self.placement(b).position(t_s)
        return math.hypot(ax - bx, ay - by)

    def move(self, name: str, track: list[list[float]] | None = None, at: list[float] | None = None) -> None:
        """Place or move a device while the air runs (used by tests and the demo)."""
        self.devices[name] = _placement(name, {"track": track} if track is not None else {"at": at})


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise UsageError(f"scenario: {what} must be a finite number, not {value!r}.")
    return float(value)


def _placement(name: str, spec: Any) -> Placement:
    if not isinstance(spec, dict):
        raise UsageError(f"scenario: device {name!r} must be an object with 'at' or 'track'.")
    tx_offset = _number(spec.get("tx_offset_db", 0.0), f"{name}.tx_offset_db")
    if "track" in spec and spec["track"] is not None:
        raw = spec["track"]
        if not isinstance(raw, list) or not raw:
            raise UsageError(f"scenario: {name}.track must be a non-empty list of [t_s, x, y].")
        points = []
        for point in raw:
            if not isinstance(point, list) or len(point) != 3:
                raise UsageError(f"scenario: {name}.track points must be [t_s, x, y], not {point!r}.")
            points.append(tuple(_number(v, f"{name}.track") for v in point))
        times = [p[0] for p in points]
        if times != sorted(times):
            raise UsageError(f"scenario: {name}.track times must not go backwards.")
        return Placement(track=tuple(points), tx_offset_db=tx_offset)  # type: ignore[arg-type]
    at = spec.get("at", [0, 0])
    if not isinstance(at, list) or len(at) != 2:
        raise UsageError(f"scenario: {name}.at must be [x, y] in metres, not {at!r}.")
    x, y = (_number(v, f"{name}.at") for v in at)
    return Placement(track=((0.0, x, y),), tx_offset_db=tx_offset)


def parse_scenario(data: Any) -> Scenario:
    if not isinstance(data, dict):
        raise UsageError("scenario: the top level must be a JSON object.")
    scale = _number(data.get("time_scale", 1.0), "time_scale")
    if not 0 < scale <= _MAX_TIME_SCALE:
        raise UsageError(f"scenario: time_scale must be in (0, {_MAX_TIME_SCALE:g}], not {scale:g}.")
    loss_spec = data.get("path_loss", {})
    if not isinstance(loss_spec, dict):
        raise UsageError("scenario: path_loss must be an object.")
    unknown = set(loss_spec) - {"rssi_at_1m", "exponent", "noise_db", "sensitivity_dbm"}
    if unknown:
        raise UsageError(f"scenario: unknown path_loss field {sorted(unknown)[0]!r}.")
    loss = PathLoss(**{k: _number(v, f"path_loss.{k}") for k, v in loss_spec.items()})
    if loss.exponent <= 0 or loss.noise_db < 0:
        raise UsageError("scenario: path_loss.exponent must be > 0 and noise_db >= 0.")
    devices_spec = data.get("devices", {})
    if not isinstance(devices_spec, dict):
        raise UsageError("scenario: devices must be an object of name -> placement.")
    devices = {str(name): _placement(str(name), spec) for name, spec in devices_spec.items()}
    return Scenario(time_scale=scale, path_loss=loss, devices=devices)


def load_scenario(path: str | Path) -> Scenario:
    try:
        text = Path(path).read_text()
    except OSError as error:
        raise UsageError(f"cannot read scenario {path}: {error.strerror or error}.") from None
    try:
        data = json.loads(text)
    except ValueError as error:
        raise UsageError(f"scenario {path} is not valid JSON: {error}.") from None
    return parse_scenario(data)
