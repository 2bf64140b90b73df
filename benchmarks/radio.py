"""Radio benchmark: what each power profile detects, what it costs, and BLE sync speed.

For each power profile, pairs of virtual tokens stand 1, 2 and 5 m apart in the virtual air
(pairs 1 km from each other) for HOURS of token time, running the real firmware app on
heap-capped MicroPython with tokenfw.radio over the virtual `bluetooth` module. Afterwards:

- detection: the share of 15-minute contact windows (every start minute after the first
  interval) in which at least one token of the pair logged the other (the service can match a
  contact from either side's log). `venue`: a venue beacon and a continuous wearable; only the
  wearable scans.
- radio on-time per hour of token time, from the firmware's own accounting (scan windows it
  opened, advertising events it sent), and the average current it implies with the reference
  board's datasheet figures (boards/esp32-devkitc/board.json); `burst` deep-sleeps between wakes
  and boots after each. The deep sleep itself is shown by tests/test_firmware_burst.py and
  tests/sync/test_burst_token.py; here the tokens idle between wakes, which the radio cannot tell.
- BLE sync throughput: one token with 5,000 records dumped through bleak (virtual air backend)
  and, in the same run, through its serial console (an unpaced pty), records per second.

Results: benchmarks/results/radio.json and radio.md. Caveat: the virtual air gives a BLE link
no air time (bumble's link is instantaneous), so BLE throughput here bounds the token-side and
host-side stacks, not the radio; the serial figure is an unpaced pty, and the line-rate bound
at 115200 baud is reported beside it.

usage: python benchmarks/radio.py [--hours H] [--scale X]   (about 6 minutes at the defaults)
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "ble"))

from airlab import START_S, AirProcess, compile_tree, json_lines, start_token, wait_all  # noqa: E402
from host_tools import power  # noqa: E402
from tokenfw import records, scheduler  # noqa: E402
from tokenfw.store import Store  # noqa: E402

DISTANCES_M = (1, 2, 5)
CONTACT_S = 15 * 60
PROFILES = ("continuous", "burst", "venue")
RESULTS = REPO / "benchmarks" / "results"


def run_profile(profile: str, hours: float, scale: float, tree: Path, work: Path) -> dict:
    work.mkdir(parents=True)
    devices = {}
    roles = {}
    for i, d in enumerate(DISTANCES_M):
        a, b = f"{profile[0]}{d}a", f"{profile[0]}{d}b"
        devices[a] = {"at": [1000.0 * i, 0.0]}
        devices[b] = {"at": [1000.0 * i + d, 0.0]}
        roles[a] = ("venue", "venue") if profile == "venue" else ("wearable", profile)
        roles[b] = ("wearable", "continuous") if profile == "venue" else ("wearable", profile)
    scenario = work / "scenario.json"
    scenario.write_text(json.dumps({"devices": devices}))
    run_s = hours * 3600
    with AirProcess(work / "air.sock", scenario=scenario, time_scale=scale, seed=11, log_path=work / "air.log") as air:
        epoch = time.time()
        procs = [
            start_token(tree, "air_token", name, air.socket_path, str(work / name), role, str(START_S), repr(epoch),
                        repr(scale), str(run_s), prof, log=work / f"{name}.out", heap_bytes=160 * 1024)
            for name, (role, prof) in roles.items()
        ]
        wait_all(procs, timeout_s=run_s / scale * 4 + 120)
    logs = {}
    for name in roles:
        lines = json_lines(work / f"{name}.out")
        summary = next(line for line in lines if "done" in line)
        store = Store(str(work / name / "log"))
        logs[name] = {
            "rpis": {line["rpi"] for line in lines if "adv" in line},
            "summary": summary,
            "records": [records.decode(seq, buf) for seq, buf in store.read(1)],
        }
    detection = {}
    for d in DISTANCES_M:
        a, b = f"{profile[0]}{d}a", f"{profile[0]}{d}b"
        spans = [(r.first_seen, r.first_seen + r.duration_s) for r in logs[a]["records"] if r.rpi.hex() in logs[b]["rpis"]]
        spans += [(r.first_seen, r.first_seen + r.duration_s) for r in logs[b]["records"] if r.rpi.hex() in logs[a]["rpis"]]
        start = START_S + 600
        end = START_S + run_s - CONTACT_S
        windows = list(range(int(start), int(end), 60))
        hit = sum(1 for w in windows if any(s <= w + CONTACT_S and e >= w for s, e in spans))
        detection[str(d)] = round(hit / len(windows), 3) if windows else None
    measured = [n for n, (role, prof) in roles.items() if prof == profile or (profile == "venue" and role == "venue")]
    on_s = [logs[n]["summary"]["on_time"]["scan_ms"] / 1000 + logs[n]["summary"]["on_time"]["adv_ms"] / 1000 for n in measured]
    scan_s = [logs[n]["summary"]["on_time"]["scan_ms"] / 1000 for n in measured]
    adv_s = [logs[n]["summary"]["on_time"]["adv_ms"] / 1000 for n in measured]
    per_h = lambda xs: round(sum(xs) / len(xs) / hours, 1)  # noqa: E731
    return {
        "detection": detection,
        "radio_on_s_per_h": per_h(on_s),
        "scan_s_per_h": per_h(scan_s),
        "adv_s_per_h": per_h(adv_s),
        "records_logged": {n: len(logs[n]["records"]) for n in roles},
        "dropped_reports": sum(logs[n]["summary"]["dropped"] for n in roles),
    }


def average_current_ma(profile: str, scan_s_per_h: float, adv_s_per_h: float) -> float:
    power_figures = json.loads((REPO / "boards" / "esp32-devkitc" / "board.json").read_text())["power"]
    prof = scheduler.profile(profile)
    if prof.get("deep_sleep"):
        # awake only while the scan window is open, plus a boot after every deep sleep
        awake_s, wakes = scan_s_per_h, 3600 / prof["wake_every_s"]
    else:
        awake_s, wakes = 3600, 0  # stock MicroPython cannot light-sleep with BLE on
    return round(power.mean_current_ma(power_figures, scan_s=scan_s_per_h, adv_s=adv_s_per_h, awake_s=awake_s,
                                       asleep_s=3600 - awake_s, wakes=wakes), 2)


def sync_throughput(work: Path) -> dict:
    from host_tools.sync_client import SyncClient
    from host_tools.transport.ble import BleTransport
    from host_tools.transport.serial_port import SerialTransport
    from test_ble_sync import RECORDS, SyncLab

    lab = SyncLab(work)
    try:
        lab.wait_for_window()

        def dump(transport) -> tuple[float, int]:
            client = SyncClient(transport, timeout_s=2.0)
            client.connect()
            started = time.monotonic()
            count = sum(len(chunk) for chunk in client.dump(1, RECORDS + 1))
            return time.monotonic() - started, count

        with BleTransport("TT-ADA", air=lab.air.socket_path) as ble:
            ble_s, ble_n = dump(ble)
        with SerialTransport(lab.pty) as serial:
            serial_s, serial_n = dump(serial)
    finally:
        lab.close()
    assert ble_n == serial_n == RECORDS
    return {
        "records": RECORDS,
        "ble_sync_records_per_s": round(RECORDS / ble_s, 1),
        "serial_sync_records_per_s": round(RECORDS / serial_s, 1),
        # 64 records (2048 bytes) per DUMP answer plus framing: ~33 wire bytes a record, 10 bits a byte
        "serial_115200_bound_records_per_s": round(115200 / 10 / 33, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=4.0, help="token hours per profile (default 4)")
    # At 720x a burst token's 2-second window is under 3 ms of host time, and scheduling jitter
    # on a busy machine drops a tenth of its contacts; at 120x it is 17 ms.
    parser.add_argument("--scale", type=float, default=120.0, help="air time scale (default 120)")
    args = parser.parse_args()
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as scratch:
        tree = compile_tree(Path(scratch) / "tree")
        profiles = {}
        for profile in PROFILES:
            result = run_profile(profile, args.hours, args.scale, tree, Path(scratch) / profile)
            result["avg_current_ma"] = average_current_ma(profile, result["scan_s_per_h"], result["adv_s_per_h"])
            profiles[profile] = result
            print(profile, json.dumps(result), flush=True)
        sync = sync_throughput(Path(scratch) / "sync")
    out = {
        "profiles": profiles,
        **sync,
        "ble_vs_serial": round(sync["ble_sync_records_per_s"] / sync["serial_sync_records_per_s"], 2),
        "ble_vs_serial_115200": round(sync["ble_sync_records_per_s"] / sync["serial_115200_bound_records_per_s"], 1),
        "hours_per_profile": args.hours,
        "time_scale": args.scale,
        "contact_s": CONTACT_S,
        "distances_m": list(DISTANCES_M),
        "elapsed_s": round(time.monotonic() - started, 1),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "radio.json").write_text(json.dumps(out, indent=2) + "\n")
    rows = "\n".join(
        f"| {name} | {p['detection']['1']} | {p['detection']['2']} | {p['detection']['5']} | "
        f"{p['radio_on_s_per_h']} | {p['avg_current_ma']} | {math.floor(1000 / p['avg_current_ma'])} h |"
        for name, p in profiles.items()
    )
    (RESULTS / "radio.md").write_text(f"""# Radio benchmark

`python benchmarks/radio.py --hours {args.hours:g} --scale {args.scale:g}`: pairs of virtual tokens running the
real firmware in the virtual air (bumble), {args.hours:g} token hours per profile at {args.scale:g}x.

| profile | detection 1 m | 2 m | 5 m | radio on-time (s/h) | avg current (mA) | 1000 mAh lasts |
| --- | --- | --- | --- | --- | --- | --- |
{rows}

Detection: share of 15-minute contacts logged by at least one token of the pair (venue: by the
wearable). On-time and current from the firmware's own radio accounting and the ESP32-DevKitC
datasheet figures; `continuous` and `venue` keep the CPU idle at {20} mA (stock MicroPython cannot
light-sleep with BLE on), `burst` deep-sleeps between its {scheduler.profile('burst')['awake_s']}-second wakes on the whole minute and
pays an estimated boot after each (board.json `wake_boot_ms`, to be measured on hardware).

Sync of {sync['records']} records, same token, same run: BLE {sync['ble_sync_records_per_s']} records/s,
serial (unpaced pty) {sync['serial_sync_records_per_s']} records/s (ratio {out['ble_vs_serial']});
a real 115200-baud UART bounds serial at about {sync['serial_115200_bound_records_per_s']} records/s
(BLE {out['ble_vs_serial_115200']}x that). The virtual
air gives the BLE link no air time, so the BLE figure measures the two stacks, not the radio.
""")
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
