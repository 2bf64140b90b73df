"""Power profiles' schedules (pure functions shared by firmware, simulator and benchmark)."""
from tokenfw import scheduler


def test_burst_wakes_once_a_minute_on_the_wall_clock():
    prof = scheduler.profile("burst")
    windows = list(scheduler.scan_windows(1_000_007, 1_000_007 + 6 * 3600, prof, scheduler.Rng(1)))
    assert windows[0][0] == 1_000_020  # the next whole minute after switching on
    assert all(start % 60 == 0 for start, _ in windows)
    assert all(b[0] - a[0] == 60 for a, b in zip(windows, windows[1:]))
    assert all(abs((end - start) - prof["awake_s"]) < 1e-9 for start, end in windows)
    # two tokens switched on at different moments, with different generators, share every wake
    other = list(scheduler.scan_windows(1_000_031, 1_000_007 + 6 * 3600, prof, scheduler.Rng(99)))
    assert {start for start, _ in other} <= {start for start, _ in windows}
    assert scheduler.next_wake(1_000_020.5, prof) == 1_000_080


def test_existing_profiles_keep_their_behaviour():
    assert scheduler.profile("continuous")["scan_every_s"] == (210, 300)
    assert scheduler.profile("venue")["scan"] is False
    assert "advertise_while_awake" not in scheduler.profile("continuous")


def test_a_burst_token_is_on_air_only_while_awake(tmp_path):
    """The real app with the burst profile, an hour of token time at 360x in the virtual air:
    it advertises only during its ~4 s wakes (one new address per wake, as after a deep sleep)."""
    import time

    from airlab import START_S, AirProcess, compile_tree, json_lines, start_token, wait_all

    tree = compile_tree(tmp_path / "tree")
    with AirProcess(tmp_path / "air.sock", time_scale=360, log_path=tmp_path / "air.log") as air:
        proc = start_token(tree, "air_token", "sleepy", air.socket_path, str(tmp_path / "sleepy"), "wearable",
                           str(START_S), repr(time.time()), "360", "3600", "burst", log=tmp_path / "sleepy.out",
                           heap_bytes=160 * 1024)
        wait_all([proc], timeout_s=120)
    lines = json_lines(tmp_path / "sleepy.out")
    summary = next(line for line in lines if "done" in line)
    wakes = [line for line in lines if "adv" in line]
    windows = summary["scan_windows"]
    assert 40 <= windows <= 75  # about one wake a minute
    assert len(wakes) >= 0.9 * windows  # the identifier goes on air at (almost) every wake
    assert len({w["addr"] for w in wakes}) == len(wakes)  # a new address each time
    assert len({w["rpi"] for w in wakes}) <= 8  # ... for the same 10-minute identifier
    events = summary["on_time"]["adv_events"]
    # ~16 per 4 s wake, not 14,000 an hour; at 360x one pass of the main loop on a loaded host is
    # up to a second or two of token time, so a wake may end that much late (on a board: ms)
    assert 0.6 * windows * 4 / 0.255 <= events <= 2.0 * windows * 4 / 0.255
