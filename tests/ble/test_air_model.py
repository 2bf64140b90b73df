"""The virtual air's placement and signal model, its scenario file, and movement on a live air."""
from __future__ import annotations

import asyncio
import json
import math
import random
import statistics

import pytest

from host_tools.air.client import AirProcess, open_air_device
from host_tools.air.model import PathLoss, load_scenario, parse_scenario
from host_tools.errors import UsageError


def test_rssi_follows_log_distance_path_loss_with_noise():
    loss = PathLoss(rssi_at_1m=-59, exponent=2.0, noise_db=4, sensitivity_dbm=-200)
    rng = random.Random(1)
    for distance, expected in ((1, -59), (2, -65.02), (5, -72.98), (10, -79)):
        samples = [loss.sample(distance, rng) for _ in range(4000)]
        assert abs(statistics.mean(samples) - expected) < 0.4
        assert 3.5 < statistics.pstdev(samples) < 4.5


def test_reports_below_sensitivity_are_lost():
    loss = PathLoss(noise_db=0, sensitivity_dbm=-100)
    rng = random.Random(2)
    assert loss.sample(50, rng) is not None  # -59 - 22*log10(50) = -96.4 dBm
    assert loss.sample(100, rng) is None  # -103 dBm


def test_devices_move_along_their_tracks():
    scenario = parse_scenario({"devices": {
        "walker": {"track": [[0, 0, 0], [100, 10, 0], [200, 10, 20]]},
        "still": {"at": [3, 4]},
    }})
    walker = scenario.placement("walker")
    assert walker.position(-5) == (0, 0)
    assert walker.position(50) == (5, 0)
    assert walker.position(150) == (10, 10)
    assert walker.position(1e9) == (10, 20)
    assert scenario.distance_m("still", "nobody", 0) == 5.0  # an unnamed device stands at the origin


@pytest.mark.parametrize("bad, sentence", [
    ([], "the top level must be a JSON object"),
    ({"time_scale": 0}, "time_scale must be in (0, 100000]"),
    ({"time_scale": "fast"}, "time_scale must be a finite number"),
    ({"path_loss": {"exponent": -1}}, "exponent must be > 0"),
    ({"path_loss": {"colour": 1}}, "unknown path_loss field 'colour'"),
    ({"devices": {"a": {"at": [1]}}}, "a.at must be [x, y]"),
    ({"devices": {"a": {"track": [[10, 0, 0], [5, 1, 1]]}}}, "times must not go backwards"),
    ({"devices": {"a": {"track": [[0, 0, float("nan")]]}}}, "finite number"),
])
def test_bad_scenarios_are_refused_in_one_sentence(bad, sentence):
    with pytest.raises(UsageError) as error:
        parse_scenario(bad)
    assert sentence in str(error.value)
    assert "\n" not in str(error.value)


def test_an_unreadable_scenario_file_is_one_sentence(tmp_path):
    path = tmp_path / "scenario.json"
    path.write_text("{not json")
    with pytest.raises(UsageError, match="is not valid JSON"):
        load_scenario(path)
    with pytest.raises(UsageError, match="cannot read scenario"):
        load_scenario(tmp_path / "missing.json")


def test_the_air_refuses_a_bad_scenario_at_start(tmp_path):
    import subprocess
    import sys

    path = tmp_path / "scenario.json"
    path.write_text(json.dumps({"time_scale": -3}))
    result = subprocess.run([sys.executable, "-m", "host_tools.air", "--socket", str(tmp_path / "s"), "--scenario", str(path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.startswith("air: scenario: time_scale must be in") and "Traceback" not in result.stderr


def test_a_device_walking_away_fades_and_falls_silent_in_a_live_air(tmp_path):
    """A host-side advertiser walks from 1 m to 400 m (token time, 60x); a host-side scanner at
    the origin hears it through bumble with RSSI falling as the path-loss model says."""
    scenario = tmp_path / "scenario.json"
    scenario.write_text(json.dumps({
        "path_loss": {"noise_db": 2},
        "devices": {"walker": {"track": [[0, 1, 0], [60, 1, 0], [240, 400, 0]]}, "ear": {"at": [0, 0]}},
    }))

    async def listen() -> list[tuple[float, int]]:
        with AirProcess(tmp_path / "air.sock", scenario=scenario, time_scale=60, seed=4, log_path=tmp_path / "air.log") as air:
            walker, walker_link = await open_air_device(air.socket_path, "walker")
            ear, ear_link = await open_air_device(air.socket_path, "ear")
            heard: list[tuple[float, int]] = []
            loop = asyncio.get_running_loop()
            started = loop.time()
            air_started = air.control({"op": "status"})["now_s"]  # the air's own token clock
            ear.on("advertisement", lambda adv: heard.append((air_started + (loop.time() - started) * 60, adv.rssi)))
            await walker.start_advertising(advertising_data=bytes.fromhex("020106"), advertising_interval_min=250,
                                           advertising_interval_max=250)
            await ear.start_scanning(legacy=True, active=False)
            await asyncio.sleep(4.5)  # 270 s of token time
            await walker_link.close()
            await ear_link.close()
            return heard

    heard = asyncio.run(listen())
    loss = PathLoss(noise_db=2)
    track = parse_scenario({"devices": {"w": {"track": [[0, 1, 0], [60, 1, 0], [240, 400, 0]]}}}).placement("w")
    # Up to ~34 m (t < 85 s) the mean stays 7 dB above sensitivity: no truncation bias.
    residuals = [rssi - loss.mean_rssi(math.hypot(*track.position(t))) for t, rssi in heard if 5 < t < 85]
    near = [rssi for t, rssi in heard if 5 < t < 55]
    late = [rssi for t, rssi in heard if t > 130]  # > 150 m: -107 dBm on average, below -100
    assert len(near) > 50 and abs(statistics.mean(near) - (-59)) < 1.5
    assert len(residuals) > 80 and abs(statistics.mean(residuals)) < 1.5
    assert min(rssi for t, rssi in heard if 75 < t < 85) < -80  # it did walk away
    assert late == []
    assert all(a[0] <= b[0] for a, b in zip(heard, heard[1:]))
