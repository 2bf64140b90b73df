"""Sync throughput over a 115200-baud serial line: `tokentool sync` against `mpremote fs cp`.

One virtual token (the real firmware on the MicroPython unix port) holds the same 10,000
records for both. Its console sits behind host_tools.serialbridge paced at 115200 baud 8N1
(11,520 bytes/s each way, like a USB-serial chip at that rate):
  1. `tokentool sync --port BRIDGE` (a fresh process: start-up, handshake, clock, dump into the
     clinic outbox, ACK) is timed end to end;
  2. `mpremote connect BRIDGE resume fs cp :log/<segment> ...` copies the same log segment files.
Reported: records/s for each, wire bytes per record (token -> host), the ratio, and
line_rate_fraction = payload bytes delivered per second / line bytes per second (32-byte
records; line bytes/s = baud / 10).

usage: python benchmarks/sync_throughput.py [--records N] [--baud B]
Writes benchmarks/results/sync_throughput.json and sync_throughput.md.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import serial  # noqa: E402

from host_tools.serialbridge import SerialBridge  # noqa: E402
from host_tools.virtual import control  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"
BIN = Path(sys.executable).parent
RECORD_BYTES = 32

_IDENTITY = """
import json
from tokenfw import config
c = config.load('/config.json', {}) or {}
c.update({"serial": "TT-0BE4C400", "role": "wearable", "identity": "private", "auth_key": "%s", "tx_power_dbm": -8})
config.save('/config.json', c)
"""
_FILL = """
import gc
from tokenfw.store import Store
from tokenfw.records import Encounter
import os
gc.collect()
s = Store("/log")
base = s.next_seq
for i in range(%(count)d):
    k = base + i
    s.append(Encounter(os.urandom(16), os.urandom(4), %(first_seen)d + k, 60 + k %% 300, 1 + k %% 9, -45 - k %% 40, -60 - k %% 30, 0))
s.commit()
print("filled", s.next_seq)
print("segments", " ".join(n for n in os.listdir("/log") if n.endswith(".seg")))
"""


def mpremote(pty: str, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "mpremote"), "connect", pty, "resume", *args], capture_output=True, text=True,
                          timeout=timeout)


def reboot(pty: str, state: Path) -> None:
    boots = (state / "supervisor.log").read_text().count("interpreter started")
    with serial.Serial(pty, 115200, timeout=0.2) as port:
        port.write(b"\r\x03\x03\x02\r\x04")
        port.read(4096)
    deadline = time.monotonic() + 30
    while (state / "supervisor.log").read_text().count("interpreter started") <= boots:
        if time.monotonic() > deadline:
            raise SystemExit("the virtual token did not reboot")
        time.sleep(0.1)
    time.sleep(1.0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--baud", type=int, default=115_200)
    args = parser.parse_args()
    line_bytes_per_s = args.baud / 10

    with tempfile.TemporaryDirectory(prefix="sync-bench-") as scratch:
        scratch = Path(scratch)
        state = scratch / "token"
        info = control.start(name="bench", state=state)
        pty = info["pty"]
        try:
            script = scratch / "setup.py"
            script.write_text(_IDENTITY % ("ab" * 32) + _FILL % {"count": args.records, "first_seen": int(time.time()) - 86400})
            done = mpremote(pty, "run", str(script))
            if "filled" not in done.stdout:
                raise SystemExit(f"could not fill the token: {done.stdout}{done.stderr}")
            segments = sorted(done.stdout.split("segments", 1)[1].split())
            # power-cycle (the flash image is kept) so the app starts on a fresh heap
            control.stop(state=state)
            pty = control.start(name="bench", state=state)["pty"]
            time.sleep(1.0)

            env = dict(os.environ, TOKENTOOL_HOME=str(scratch / "clinic"))
            app_restarts = 0
            with SerialBridge(pty, baud=args.baud) as bridge:
                while True:
                    started = time.monotonic()
                    done = subprocess.run([str(BIN / "tokentool"), "sync", "--port", bridge.path, "--json"],
                                          capture_output=True, text=True, env=env, timeout=1800)
                    tokentool_s = time.monotonic() - started
                    if done.returncode == 0:
                        break
                    # Known app issue (see the report): on some boots the app cannot load the
                    # sync stack into its fragmented heap and stops. Reboot and measure again;
                    # the count is reported.
                    if "stopped with MemoryError" not in done.stderr or app_restarts >= 3:
                        raise SystemExit(f"tokentool sync failed: {done.stderr}")
                    app_restarts += 1
                    reboot(pty, state)
                    bridge.bytes_to_host = bridge.bytes_to_token = 0
                report = json.loads(done.stdout)
                if report["new_records"] != args.records:
                    raise SystemExit(f"tokentool synced {report['new_records']} records, expected {args.records}")
                wire_to_host = bridge.bytes_to_host
                wire_to_token = bridge.bytes_to_token

                local = scratch / "copied"
                local.mkdir()
                started = time.monotonic()
                command = []
                for name in segments:
                    command += ["fs", "cp", f":log/{name}", str(local / name), "+"]
                done = mpremote(bridge.path, *command[:-1], timeout=3600)
                mpremote_s = time.monotonic() - started
                copied = sum((local / name).stat().st_size for name in segments if (local / name).exists())
                if done.returncode != 0 or copied < args.records * RECORD_BYTES:
                    raise SystemExit(f"mpremote fs cp failed ({copied} bytes): {done.stderr[-500:]}")
        finally:
            control.stop(state=state)

    payload = args.records * RECORD_BYTES
    results = {
        "records": args.records,
        "baud": args.baud,
        "line_bytes_per_s": line_bytes_per_s,
        "tokentool_seconds": round(tokentool_s, 2),
        "tokentool_sync_phase_seconds": report["seconds"],
        "tokentool_records_per_s": round(args.records / tokentool_s, 1),
        "tokentool_retransmissions": report["retransmissions"],
        "app_restarts_before_measuring": app_restarts,
        "wire_bytes_to_host": wire_to_host,
        "wire_bytes_to_token": wire_to_token,
        "wire_bytes_per_record": round(wire_to_host / args.records, 2),
        "line_rate_fraction": round(payload / tokentool_s / line_bytes_per_s, 3),
        "line_rate_fraction_sync_phase": round(payload / report["seconds"] / line_bytes_per_s, 3),
        "mpremote_seconds": round(mpremote_s, 2),
        "mpremote_bytes": copied,
        "mpremote_records_per_s": round(args.records / mpremote_s, 1),
        "mpremote_line_rate_fraction": round(copied / mpremote_s / line_bytes_per_s, 3),
        "speedup_vs_mpremote": round(mpremote_s / tokentool_s, 2),
        "goal": {"line_rate_fraction": 0.85, "speedup_vs_mpremote": 3.0},
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "sync_throughput.json").write_text(json.dumps(results, indent=2) + "\n")
    met = results["line_rate_fraction"] >= 0.85 and results["speedup_vs_mpremote"] >= 3
    (RESULTS / "sync_throughput.md").write_text(f"""# Sync throughput at {args.baud} baud

{args.records:,} records (32 bytes each) from one virtual token, its console behind a pty bridge paced
at {args.baud} baud 8N1 ({line_bytes_per_s:,.0f} bytes/s each way), in the same run:

| | seconds | records/s | line rate used |
| --- | ---: | ---: | ---: |
| `tokentool sync` (whole command: start-up, handshake, clock, dump into the outbox, ACK) | {tokentool_s:.1f} | {results['tokentool_records_per_s']:,.0f} | {results['line_rate_fraction']:.0%} |
| `tokentool sync`, sync phase only | {report['seconds']:.1f} | {args.records / report['seconds']:,.0f} | {results['line_rate_fraction_sync_phase']:.0%} |
| `mpremote fs cp` of the same log segments | {mpremote_s:.1f} | {results['mpremote_records_per_s']:,.0f} | {results['mpremote_line_rate_fraction']:.0%} |

- Wire bytes per record, token to host: {results['wire_bytes_per_record']} (32 payload + framing: END/ESC
  stuffing, an 18-byte header and a CRC per 128-record answer; {results['tokentool_retransmissions']} retransmissions).
- `tokentool sync` is {results['speedup_vs_mpremote']}x faster than `mpremote fs cp`.
- Goal (>= 85 % of line rate, >= 3x mpremote): {'met' if met else 'NOT met'}.

The token is filled through mpremote (its own Store) and power-cycled before the measurement.
mpremote's ceiling here is ~30 % of the line, so 3.3x is the most any protocol could gain over it.

Reproduce: `.venv/bin/python benchmarks/sync_throughput.py` (results in sync_throughput.json).
""")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
