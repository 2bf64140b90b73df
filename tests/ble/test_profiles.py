"""Power profiles' schedules (pure functions shared by firmware, simulator and benchmark)."""
from tokenfw import scheduler


def test_burst_wakes_about_once_a_minute_with_a_drifting_phase():
    prof = scheduler.profile("burst")
    windows = list(scheduler.scan_windows(0, 6 * 3600, prof, scheduler.Rng(1)))
    gaps = [b[0] - a[0] for a, b in zip(windows, windows[1:])]
    assert all(50 <= g <= 70 for g in gaps)
    assert abs(sum(gaps) / len(gaps) - 60) < 1.5
    assert len(set(round(g) for g in gaps)) > 10  # jittered: phases between tokens drift
    assert all(abs((end - start) - prof["awake_s"]) < 1e-9 for start, end in windows)


def test_existing_profiles_keep_their_behaviour():
    assert scheduler.profile("continuous")["scan_every_s"] == (210, 300)
    assert scheduler.profile("venue")["scan"] is False
    assert "advertise_while_awake" not in scheduler.profile("continuous")
