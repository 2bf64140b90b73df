"""Firmware core figures, measured on the real MicroPython unix port (heap capped like an ESP32).

- identifier derivation: ms per RPI, against one raw AES block in the same run;
- flash store: ms per record append (batched commits), against plain littlefs appends of the
  same bytes; flash bytes per record including filesystem overhead;
- a day of the firmware's own main loop under heavy traffic (simulated-time board), against a
  quiet day of the same loop; peak live heap;
- days of retention in the 2 MiB partition at 200, 1,000 and 5,000 encounters a day.

Writes benchmarks/results/firmware_core.json and firmware_core.md. x86 unix-port timings are
not ESP32 timings: the ratios are what carry over (an ESP32 at 240 MHz is roughly 30-60x slower).

usage: python benchmarks/firmware_core.py [--quick]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from host_tools import micropython as mp  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"
MP_DIR = REPO / "benchmarks" / "mp"
RETENTION_POLICY_DAYS = 21
ENCOUNTER_RATES = (200, 1000, 5000)


def run_mp(script: str, *args: str) -> dict:
    done = mp.run(MP_DIR / script, *args, extra_paths=(mp.BOARDS_DIR / "virtual",), timeout_s=900)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise SystemExit(f"{script} failed on MicroPython:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return json.loads(lines[-1])


def retention_days(bytes_per_record: float, usable_bytes: int) -> dict[str, dict[str, float]]:
    """Days the partition holds at each encounter rate: what fits, and what the 21-day
    retention policy keeps of it."""
    out = {}
    for rate in ENCOUNTER_RATES:
        fits = usable_bytes / (bytes_per_record * rate)
        out[str(rate)] = {"fits_days": round(fits, 1), "kept_days": round(min(fits, RETENTION_POLICY_DAYS), 1)}
    return out


def measure(quick: bool) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        gaen = run_mp("gaen_bench.py", "500" if quick else "5000")
        store = run_mp("store_append.py", f"{tmp}/store.img", "600" if quick else "6000", "60")
        days = "0.1" if quick else "1"
        busy = run_mp("firmware_day.py", f"{tmp}/busy.img", days, "35")
        quiet = run_mp("firmware_day.py", f"{tmp}/quiet.img", days, "0")
    # Free space the log may use: the partition less what littlefs and the other files keep.
    usable = busy["store"]["bytes_total"] - 16 * 4096
    per_day = float(days)
    return {
        "interpreter": "micropython unix port, heap %d bytes" % mp.ESP32_HEAP_BYTES,
        "rpi_derivation_ms": gaen["rpi_ms"],
        "aes_block_ms": gaen["aes_block_ms"],
        "rpi_over_aes_block": gaen["rpi_over_aes_block"],
        "tek_to_keys_ms": gaen["tek_to_keys_ms"],
        "record_append_ms": store["record_append_ms"],
        "raw_littlefs_append_ms": store["raw_append_ms"],
        "record_append_over_raw": store["record_append_ms"] / store["raw_append_ms"],
        "flash_bytes_per_record": store["flash_bytes_per_record"],
        "flash_block_writes_per_record": store["flash_block_writes_per_record"],
        "retention_days": retention_days(store["flash_bytes_per_record"], usable),
        "day_of_aggregation_ms": busy["elapsed_ms"] / per_day,
        "quiet_day_ms": quiet["elapsed_ms"] / per_day,
        "busy_over_quiet_day": busy["elapsed_ms"] / max(quiet["elapsed_ms"], 1),
        "heavy_day": {
            "crowd": busy["crowd"],
            "records_per_day": busy["records"] / per_day,
            "reports_heard": busy["reports_delivered"],
            "reports_dropped": busy["reports_dropped"],
        },
        "peak_heap_bytes": busy["peak_heap_bytes"],
        "heap_total_bytes": busy["heap_total_bytes"],
        "quick": quick,
    }


def summary(r: dict) -> str:
    rows = "\n".join(
        f"| {rate} | {v['fits_days']} | {v['kept_days']} |" for rate, v in r["retention_days"].items()
    )
    return f"""# Firmware core ({r['interpreter']})

| figure | value | baseline in the same run |
| --- | --- | --- |
| RPI derivation | {r['rpi_derivation_ms'] * 1000:.1f} us | {r['rpi_over_aes_block']:.1f}x one AES block |
| record append (commit every 60) | {r['record_append_ms']:.3f} ms | {r['record_append_over_raw']:.1f}x a plain littlefs append |
| flash per record, filesystem included | {r['flash_bytes_per_record']:.1f} bytes | 32-byte record |
| a day of the main loop, {r['heavy_day']['crowd']} devices around | {r['day_of_aggregation_ms'] / 1000:.1f} s | {r['busy_over_quiet_day']:.1f}x a quiet day |
| peak live heap | {r['peak_heap_bytes']} bytes | of {r['heap_total_bytes']} |

Records per heavy day: {r['heavy_day']['records_per_day']:.0f}; radio reports dropped by the ring buffer:
{r['heavy_day']['reports_dropped']}.

Retention in the 2 MiB partition:

| encounters / day | days that fit | days kept (21-day policy) |
| --- | --- | --- |
{rows}

Timings are on the x86 unix port; ratios carry over to an ESP32, absolute times do not.
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small run (for tests)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    results = measure(args.quick)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "firmware_core.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "firmware_core.md").write_text(summary(results))
    print(summary(results))


if __name__ == "__main__":
    main()
