"""The scale benchmark's code at tiny scale: its synthetic world is what it claims to be and
the engine finds exactly what was planted there (timings are not asserted)."""
import importlib.util
import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "matching_scale.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("matching_scale_bench", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module      # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_quick_run_finds_everything_planted_and_writes_results(bench, tmp_path):
    scale = bench.quick_scale()
    results = bench.run(scale, log=lambda *args: None)
    assert results["checks"] and all(results["checks"].values()), results["checks"]
    assert results["tokens"] == scale.tokens and results["days"] == scale.days
    assert results["matches"] > 0 and results["case_report_exposed"] > 0
    assert not results["baseline_resolve_extrapolated"]   # the baseline saw every token
    bench.write_results(results, tmp_path)
    written = json.loads((tmp_path / "matching_scale.json").read_text())
    for key in ("tokens", "days", "case_report_s", "logs_matched", "cases", "match_s",
                "baseline_match_s"):
        assert key in written
    assert "all pass" in (tmp_path / "matching_scale.md").read_text()


def test_world_plants_real_identifiers_of_the_case(bench):
    from tokenfw import gaen
    scale = bench.quick_scale()
    world = bench.build_world(scale)
    heard = [s for s in world.stored if s.observer in world.expect_heard_case
             and (s.observer, s.seq, world.case.serial) in world.expect_matches]
    assert len({s.observer for s in heard}) == scale.heard_case
    s = heard[0]
    enin = s.first_seen // 600
    tek = gaen.escrowed_tek(world.case.seed, enin // 144)
    assert gaen.rpi(gaen.rpi_key(tek), enin) == s.rpi


def test_broken_matching_fails_the_checks(bench, monkeypatch):
    # A matcher that misses what it should find must turn the benchmark's checks red.
    from matching_service.matching import MatchResult
    real = bench.match_keys
    monkeypatch.setattr(bench, "match_keys", lambda *a, **k: MatchResult(
        real(*a, **k).matches[1:], []))
    results = bench.run(bench.quick_scale(), log=lambda *args: None)
    assert not results["checks"]["match_finds_exactly_the_planted_sightings"]
    assert not results["all_checks_pass"]
