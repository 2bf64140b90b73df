"""The precision ceiling: the best any scoring of the radio measurements could do."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from host_tools.simulation import ceiling
from host_tools.simulation.runner import SimulationConfig, simulate


def test_at_least_m_events_matches_counting_every_outcome():
    rng = np.random.default_rng(3)
    p = rng.random(9)
    group = np.array([0, 1, 0, 2, 1, 0, 0, 2, 1])
    got = ceiling.at_least(p, group, 3, 2)
    for g in range(3):
        ps = p[group == g]
        want = sum(np.prod([q if hit else 1 - q for q, hit in zip(ps, hits)])
                   for hits in itertools.product((0, 1), repeat=len(ps)) if sum(hits) >= 2)
        assert got[g] == pytest.approx(want)


def test_precision_is_read_where_recall_first_reaches_the_goal():
    score = {"a": 0.9, "b": 0.8, "c": 0.7, "d": 0.6, "e": 0.5}
    assert ceiling.precision_at_recall(score, {"a", "c"}, 0.9) == pytest.approx(2 / 3, abs=1e-4)
    assert ceiling.precision_at_recall(score, {"a", "b"}, 0.9) == 1.0
    assert ceiling.precision_at_recall(score, set(), 0.9) is None


def _parts(attenuation_of_close, attenuation_of_far, k, n=41):
    """Two days of a case (0) with wearers 1..n-1: the odd ones close for 3 slots a day, the
    even ones 3 slots at 2-3 m; each slot measured at the given mean attenuation."""
    is_case = np.zeros(n, bool)
    is_case[0] = True
    rng = np.random.default_rng(1)
    parts = []
    for _ in range(2):
        b = np.repeat(np.arange(1, n), 3)
        close = b % 2 == 1
        att = np.where(close, attenuation_of_close, attenuation_of_far).astype(float)
        body = np.where(close, 0.0, 8.0)  # the far ones have a body in the path
        parts.append(ceiling.day_part(np.zeros_like(b), b, att, body, close, is_case, n,
                                      {ceiling.INFINITE: (None, True), "sampled": (k, True),
                                       ceiling.NO_BODY: (None, False)}, rng))
    return parts, is_case, n


def test_attenuation_that_tells_close_from_far_gives_a_ceiling_of_one():
    parts, is_case, n = _parts(52.0, 70.0, 1.2)
    got = ceiling.ceiling(parts, is_case, n, 3, 0.9)
    # 18 dB apart: fading cannot mix them (10 dB apart once the body is taken out)
    assert got == {ceiling.INFINITE: 1.0, "sampled": 1.0, ceiling.NO_BODY: 1.0}


def test_taking_the_body_out_separates_what_only_the_body_made_alike():
    parts, is_case, n = _parts(60.0, 60.0, 1.2)  # far but read as near: 8 dB of body less
    got = ceiling.ceiling(parts, is_case, n, 3, 0.9)
    assert got[ceiling.INFINITE] < 0.6
    assert got[ceiling.NO_BODY] == 1.0


def test_attenuation_that_says_nothing_gives_the_share_of_exposed_wearers():
    parts, is_case, n = _parts(60.0, 60.0, 1.2)
    got = ceiling.ceiling(parts, is_case, n, 3, 0.9)
    assert got[ceiling.INFINITE] == pytest.approx(0.5, abs=0.05)
    assert got["sampled"] <= 0.75


def test_fading_lowers_the_ceiling_of_close_attenuations():
    parts, is_case, n = _parts(58.0, 60.0, 1.0, n=2001)
    got = ceiling.ceiling(parts, is_case, n, 3, 0.9)
    assert got[ceiling.INFINITE] == 1.0
    assert got["sampled"] < 1.0


def test_a_community_run_reports_a_ceiling_above_what_its_service_reaches():
    config = SimulationConfig(population=400, days=3, seed=5, processes=1, positive_share=0.05,
                              clinic_path="codec", max_case_reports=1)
    result = simulate(config)["profiles"]["continuous"]
    top = result["precision_ceiling_at_goal_recall"]
    assert 0 < top["this_profile"] <= top["infinite_sampling"] + 0.05 <= 1.05
    best = result["best_setting_at_goal_recall"]
    if best is not None:
        assert best["precision"] <= top["infinite_sampling"] + 0.05
