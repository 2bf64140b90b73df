"""The virtual world's clock: accelerated for a scenario's day, then in step with real time,
so a clinic syncing "now" finds tokens whose day has just ended rather than one racing ahead."""
from __future__ import annotations

import pytest

from host_tools.virtual import scenario
from host_tools.virtual.air import World


def test_world_runs_fast_for_the_scenario_then_at_real_speed():
    world = World(start_s=1_000_000, time_scale=600, host_epoch_s=500, fast_for_s=36_000)
    assert world.now(500) == 1_000_000
    assert world.now(530) == 1_000_000 + 30 * 600  # 30 host seconds = 5 world hours
    assert world.now(560) == 1_036_000  # the day is over after 60 host seconds
    assert world.now(620) == 1_036_060  # then one world second per host second


def test_without_fast_for_the_whole_run_is_accelerated():
    world = World(start_s=0, time_scale=60, host_epoch_s=0)
    assert world.now(100) == 6000


def test_fast_for_is_validated_in_the_header(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_text('{"start": 1700000000, "time_scale": 100, "fast_for": 7200}\n')
    assert scenario.load(path).fast_for_s == 7200
    path.write_text('{"start": 1700000000, "fast_for": -5}\n')
    with pytest.raises(Exception, match="fast_for"):
        scenario.load(path)
