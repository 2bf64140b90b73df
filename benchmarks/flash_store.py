"""Flash store benchmark: the firmware's log on littlefs under the real MicroPython interpreter.

Measures (benchmarks/mp/flash_store_bench.py does the work on the heap-capped unix port):
- time per record for append+commit, per record and batched, against a baseline in the same
  run: the plainest durable littlefs append (open, write 32 bytes, close);
- flash program operations per record (littlefs writes in 128-byte cache flushes);
- flash bytes per record including filesystem overhead: the 2 MiB partition filled until the
  full-flash policy first drops a segment, divided by the records then stored;
- days of retention in 2 MiB at 200, 1,000 and 5,000 encounters a day (the 21-day retention
  period caps it).

Host times are the unix port on this machine (its file I/O stands in for flash): use them as
ratios. `measure()` is importable (benchmarks/firmware_core.py uses it); run this file to write
benchmarks/results/flash_store.json and flash_store.md.
"""
from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from host_tools import micropython  # noqa: E402

RETENTION_DAYS = 21
ENCOUNTERS_PER_DAY = (200, 1000, 5000)
RESULTS = REPO / "benchmarks" / "results"


def measure() -> dict:
    with tempfile.TemporaryDirectory(prefix="flash-bench-") as scratch:
        done = micropython.run(
            REPO / "benchmarks" / "mp" / "flash_store_bench.py", str(Path(scratch) / "flash.img"),
            extra_paths=(micropython.BOARDS_DIR / "virtual",), timeout_s=900,
        )
    lines = [line for line in done.stdout.splitlines() if line.startswith("BENCH ")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"flash store benchmark failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    raw = json.loads(lines[-1][len("BENCH "):])
    capacity = raw["capacity_records"]
    return {
        "record_append_ms": round(raw["append_batched_ms"], 4),
        "record_append_commit_each_ms": round(raw["append_commit_each_ms"], 3),
        "baseline_raw_append_close_ms": round(raw["raw_append_close_ms"], 3),
        "commit_each_vs_baseline": round(raw["append_commit_each_ms"] / raw["raw_append_close_ms"], 3),
        "batched_vs_baseline": round(raw["append_batched_ms"] / raw["raw_append_close_ms"], 4),
        "flash_programs_per_record_batched": round(raw["flash_programs_per_record_batched"], 3),
        "flash_programs_per_record_commit_each": round(raw["flash_programs_per_record_commit_each"], 2),
        "flash_bytes_per_record": round(raw["bytes_per_record"], 2),
        "flash_bytes_per_record_at_20000": round(raw["bytes_per_record_at_20000"], 2),
        "capacity_records_2mib": capacity,
        "segments_at_full": raw["segments_at_full"],
        "flash_full_after_days": {str(n): round(capacity / n, 1) for n in ENCOUNTERS_PER_DAY},
        "retention_days": {str(n): round(min(RETENTION_DAYS, capacity / n), 1) for n in ENCOUNTERS_PER_DAY},
        "heap_growth_bytes_during_fill": raw["heap_growth_bytes_during_fill"],
    }


def write_results(result: dict) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "flash_store.json").write_text(json.dumps(result, indent=2) + "\n")
    days = result["retention_days"]
    full = result["flash_full_after_days"]
    lines = [
        "# Flash store (littlefs, 2 MiB, MicroPython unix port)",
        "",
        f"- Flash per record, filesystem overhead included: **{result['flash_bytes_per_record']} bytes** "
        f"(32-byte record; {result['capacity_records_2mib']} records fill 2 MiB).",
        f"- Append (batched, 64 per commit): {result['record_append_ms']} ms/record, "
        f"{result['flash_programs_per_record_batched']} flash programs/record; "
        f"commit after every record: {result['record_append_commit_each_ms']} ms, "
        f"{result['flash_programs_per_record_commit_each']} programs.",
        f"- Baseline (open, append 32 bytes, close on littlefs): {result['baseline_raw_append_close_ms']} ms; "
        f"store batched / baseline = {result['batched_vs_baseline']}, "
        f"commit-each / baseline = {result['commit_each_vs_baseline']}.",
        "- Times are this host's (file I/O stands in for flash): compare ratios, not absolutes.",
        "",
        "| encounters/day | flash full after (days) | retention (days, 21-day cap) |",
        "| --- | --- | --- |",
        *[f"| {n} | {full[str(n)]} | {days[str(n)]} |" for n in ENCOUNTERS_PER_DAY],
        "",
    ]
    (RESULTS / "flash_store.md").write_text("\n".join(lines))


if __name__ == "__main__":
    outcome = measure()
    write_results(outcome)
    print(json.dumps(outcome, indent=2))
