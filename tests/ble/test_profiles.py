"""Power profiles' schedules (pure functions shared by firmware, simulator and benchmark)."""
from tokenfw import scheduler


def test_burst_wakes_every_minute_for_four_seconds():
    prof = scheduler.profile("burst")
    wakes = list(scheduler.wakes(1000, 1000 + 3600, prof, phase_s=7))
    assert len(wakes) == 60
    assert all(end - start == 4 for start, end in wakes)
    assert all(b[0] - a[0] == 60 for a, b in zip(wakes, wakes[1:]))
    assert all(start % 60 == 7 for start, _ in wakes)


def test_burst_scan_windows_follow_the_wakes():
    prof = scheduler.profile("burst")
    rng = scheduler.Rng(1)
    windows = list(scheduler.scan_windows(0, 600, prof, rng))
    gaps = [b[0] - a[0] for a, b in zip(windows, windows[1:])]
    assert gaps and all(abs(g - 60) < 1e-9 for g in gaps)
    assert all(abs((end - start) - 4.0) < 1e-9 for start, end in windows)


def test_existing_profiles_keep_their_behaviour():
    assert scheduler.profile("continuous")["scan_every_s"] == (210, 300)
    assert scheduler.profile("venue")["scan"] is False
    assert "advertise_while_awake" not in scheduler.profile("continuous")
