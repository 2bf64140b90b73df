"""`make demo`: the whole system on this machine, on embedded defaults, in a few minutes.

It starts the matching service (SQLite), four virtual tokens and a venue beacon (the real
firmware on the MicroPython unix port, sharing a virtual air, time-accelerated), provisions
them, lets a simulated day pass, syncs the tokens at the clinic, uploads, reports one wearer
positive with a one-time code, and prints the case report and every wearer's exposure status;
then a short community simulation. Every step runs the same commands a clinic worker,
technician or health official would run, and says what it does in their words.

usage: python -m host_tools.demo [--workdir DIR] [--day-seconds S] [--quick]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from host_tools.micropython import REPO_ROOT
from host_tools.service_client import wait_until_serving

BIN = Path(sys.executable).parent
WEARERS = ("amina", "bakari", "chidi", "dede")
VENUE = "market"
HOUR = 3600


class DemoFailed(Exception):
    pass


def say(text: str) -> None:
    print(f"\n== {text}", flush=True)


def detail(text: str) -> None:
    print(f"   {text}", flush=True)


def scenario(start: int, scale: float, fast_for: float) -> str:
    """One day in the life of four wearers. Times are seconds after `start` (world time); the
    first `fast_for` seconds run `scale` times faster than real time, then the world keeps
    pace with the clinic's clock."""
    lines = [
        {"start": start, "time_scale": scale, "fast_for": fast_for},
        # Amina and her grandson Bakari share a room in the morning: close, 40 minutes.
        {"contact": ["amina", "bakari"], "from": 2 * HOUR, "to": 2 * HOUR + 2400, "rssi": -55},
        # Amina goes to the market; Chidi is there too, and they talk for 20 minutes.
        {"contact": ["amina", VENUE], "from": 4 * HOUR, "to": 5 * HOUR, "rssi": -70},
        {"contact": ["chidi", VENUE], "from": 4 * HOUR + 900, "to": 6 * HOUR, "rssi": -72},
        {"contact": ["amina", "chidi"], "from": 4 * HOUR + 1200, "to": 4 * HOUR + 2400, "rssi": -62},
        # Dede lives next door: heard through the wall, far and faint, for 40 minutes.
        {"contact": ["amina", "dede"], "from": 8 * HOUR, "to": 8 * HOUR + 2400, "rssi": -96},
    ]
    return "\n".join(json.dumps(line) for line in lines) + "\n"


class Demo:
    def __init__(self, workdir: Path, day_s: float, quick: bool):
        self.workdir = workdir
        self.quick = quick
        self.world_s = 10 * HOUR + 600  # the scenario's day, and ten minutes to close its records
        self.scale = self.world_s / day_s
        self.service: subprocess.Popen | None = None
        self.clinic_air: subprocess.Popen | None = None
        self.tokens: dict[str, dict] = {}
        self.summary: dict = {}  # what happened, for tests and for anyone scripting the demo
        self.env = dict(os.environ)
        self.env.update({
            "TOKENTOOL_OUTBOX": str(workdir / "clinic" / "outbox.sqlite"),
            "TOKENTOOL_KEYSTORE": str(workdir / "clinic" / "keystore.sqlite"),
            "TOKENTOOL_CONFIG": str(workdir / "clinic" / "service.json"),
            "MATCHING_DATA_DIR": str(workdir / "service"),
        })

    # -- running commands ----------------------------------------------------------------------
    def run(self, *argv: str, want_json: bool = True, timeout_s: float = 300, env: dict | None = None) -> dict | str:
        command = [str(BIN / argv[0]), *argv[1:]] + (["--json"] if want_json else [])
        done = subprocess.run(command, env={**self.env, **(env or {})}, capture_output=True, text=True,
                              timeout=timeout_s)
        if done.returncode != 0:
            raise DemoFailed(f"`{' '.join(argv)}` failed: {done.stderr.strip() or done.stdout.strip()}")
        return json.loads(done.stdout) if want_json else done.stdout.strip()

    # -- steps -----------------------------------------------------------------------------------
    def start_service(self) -> None:
        say("Starting the national matching service (embedded SQLite database)")
        (self.workdir / "service").mkdir(parents=True)
        (self.workdir / "clinic").mkdir(parents=True)
        admin = self.run("matching-service", "create-key", "--role", "admin", "--label", "demo operator")
        self.official = self.run("matching-service", "create-key", "--role", "official",
                                 "--label", "district health officer")["key"]
        clinic = self.run("matching-service", "create-key", "--role", "clinic", "--label", "Clinic Nord")["key"]
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        log = open(self.workdir / "service" / "service.log", "w")
        self.service = subprocess.Popen([str(BIN / "matching-service"), "serve", "--port", str(port)],
                                        env=self.env, stdout=log, stderr=subprocess.STDOUT)
        if not wait_until_serving(self.url, self.service):
            raise DemoFailed(f"the matching service did not start; see {log.name}")
        (self.workdir / "clinic" / "service.json").write_text(json.dumps({"url": self.url, "key": clinic}))
        del admin  # the operator keeps it; the demo needs no admin work after this
        detail(f"service at {self.url}; keys made for the operator, a clinic and a health officer")

    def switch_on(self, air: Path, scenario_file: Path | None = None) -> None:
        for i, name in enumerate((*WEARERS, VENUE)):
            extra = ["--scenario", str(scenario_file)] if scenario_file and i == 0 else []
            info = self.run("tokentool", "virtual", "start", "--name", name, "--state",
                            str(self.workdir / "tokens" / name), "--air", str(air), "--clock", "set", *extra)
            self.tokens.setdefault(name, {}).update(info)

    def switch_off(self) -> None:
        for info in self.tokens.values():
            self.run("tokentool", "virtual", "stop", "--state", info["state"])

    def start_tokens(self) -> None:
        say(f"Technician's workshop: switching on {len(WEARERS)} wearers' tokens and the market's beacon")
        self.switch_on(self.workdir / "workshop")
        for name, info in self.tokens.items():
            detail(f"{name:7} token on {info['pty']}")

    def hand_out(self) -> None:
        say("Handing the tokens out: the wearers go about their day")
        self.switch_off()
        # The accelerated day ends at "now", when the wearers reach the clinic; from then on the
        # tokens' world runs at the speed of the clinic's clock.
        start = int(time.time() + self.world_s / self.scale - self.world_s)
        self.summary["scenario_start"] = start
        scenario_file = self.workdir / "day.jsonl"
        scenario_file.write_text(scenario(start, self.scale, self.world_s))
        self.switch_on(self.workdir / "air", scenario_file)
        self.day_ends_at = time.monotonic() + self.world_s / self.scale
        detail(f"one simulated day (10 hours) passes in about {self.world_s / self.scale:.0f} s")

    def provision(self) -> None:
        say("Technician: giving each token its identity (serial, escrowed seed, auth key)")
        ports = ",".join(self.tokens[name]["pty"] for name in WEARERS)
        result = self.run("tokentool", "provision", "--port", ports, "--role", "wearable", "--escrow")
        venue = self.run("tokentool", "provision", "--port", self.tokens[VENUE]["pty"], "--role", "venue")
        for entry in _entries(result) + _entries(venue):
            name = next(n for n, t in self.tokens.items() if t["pty"] == entry["port"])
            self.tokens[name]["serial"] = entry["serial"]
            detail(f"{name:7} is {entry['serial']}")
        self.run("tokentool", "register", "--serial", self.tokens[VENUE]["serial"],
                 "--venue-name", "Central market", "--venue-place", "Ward 3")
        registered = self.run("tokentool", "register")
        detail(f"registered with the service: the venue beacon and {len(registered['created'])} wearers' tokens")

    def let_the_day_pass(self) -> None:
        say("The day passes: tokens advertise, listen every few minutes, and log who they hear")
        while time.monotonic() < self.day_ends_at + 2:
            time.sleep(0.5)
        detail("evening: the wearers come to the clinic")

    def clinic_sync(self) -> None:
        say("Clinic: syncing the tokens (sets the clock, copies new records into the outbox)")
        for name in ("chidi", "dede"):
            line = self.run("tokentool", "sync", "--port", self.tokens[name]["pty"], want_json=False)
            detail(f"{name:7} {line}  (USB cable)")
        self.battery_from_the_log("chidi")
        self.sync_over_bluetooth("bakari")
        uploaded = self.run("tokentool", "upload", want_json=False)
        detail(uploaded)

    def battery_from_the_log(self, name: str) -> None:
        """What the token's own hourly radio log says about its battery (tokentool events)."""
        found = _entries(self.run("tokentool", "events", "--port", self.tokens[name]["pty"]))
        estimate = found[0].get("power") if found else None
        if estimate:
            self.summary["battery_from_log"] = estimate
            detail(f"{name:7} its own log: radio on {estimate['scan_s_per_h'] + estimate['adv_s_per_h']:.0f} s an hour, "
                   f"{estimate['mean_ma']} mA: a charge lasts {estimate['battery_days']} days")

    def sync_over_bluetooth(self, name: str) -> None:
        """The wearer walks into the clinic and presses the button on the token: it opens a
        Bluetooth sync window, the clinic's laptop finds it by serial and syncs without a cable.
        The clinic room is a virtual BLE air of its own (bumble), where the token now is."""
        token = self.tokens[name]
        air_socket = self.workdir / "clinic-air.sock"
        log = open(self.workdir / "clinic-air.log", "w")
        self.clinic_air = subprocess.Popen([sys.executable, "-m", "host_tools.air", "--socket", str(air_socket)],
                                           env=self.env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while not air_socket.exists():
            if self.clinic_air.poll() is not None or time.monotonic() > deadline:
                raise DemoFailed(f"the clinic's Bluetooth air did not start; see {log.name}")
            time.sleep(0.1)
        in_clinic = {"TOKENTOOL_AIR": str(air_socket)}
        self.run("tokentool", "virtual", "stop", "--state", token["state"])
        self.run("tokentool", "virtual", "start", "--name", name, "--state", token["state"], "--clock", "set",
                 env=in_clinic)
        button = Path(token["state"]) / "button"
        button.touch()  # the wearer presses the button
        try:
            deadline = time.monotonic() + 60
            while True:
                found = self.run("tokentool", "scan", "--timeout", "3", env=in_clinic)
                if token["serial"] in json.dumps(found):
                    break
                if time.monotonic() > deadline:
                    raise DemoFailed(f"{name}'s token never opened its Bluetooth sync window")
        finally:
            button.unlink(missing_ok=True)
        line = self.run("tokentool", "sync", "--port", f"ble:{token['serial']}", want_json=False, env=in_clinic)
        detail(f"{name:7} {line}  (Bluetooth, after a button press)")

    def report_positive(self) -> int:
        say("Health officer: Amina tested positive; issuing her a one-time code")
        amina = self.tokens["amina"]
        reply = httpx.post(self.url + "/v1/codes", json={"token": amina["serial"], "report_type": 1},
                           headers={"Authorization": f"Bearer {self.official}"}, timeout=30)
        if reply.status_code != 201 and reply.status_code != 200:
            raise DemoFailed(f"the service refused the code: {reply.text}")
        code = reply.json()["code"]
        detail(f"code {code} (valid 48 hours, once, only for {amina['serial']})")
        say("Clinic: Amina hands over her token; her keys and log go up with the code")
        line = self.run("tokentool", "report-positive", "--port", amina["pty"], "--code", code,
                        want_json=True, timeout_s=600)
        detail(f"{amina['serial']}: accepted as case {line['case_id']}")
        return int(line["case_id"])

    def case_report(self, case_id: int) -> None:
        say("Health officer: the case report (who, where, when)")
        reply = httpx.get(f"{self.url}/v1/cases/{case_id}/report",
                          headers={"Authorization": f"Bearer {self.official}"}, timeout=300)
        if reply.status_code != 200:
            raise DemoFailed(f"no case report: {reply.text}")
        report = reply.json()
        self.summary["case_report"] = report
        names = {t["serial"]: n for n, t in self.tokens.items() if "serial" in t}
        detail(f"case {case_id}: {names.get(report['token'], report['token'])} ({report['token']})")
        for contact in report["contacts"]:
            detail(f"  near {names.get(contact['serial'], contact['serial']):7} "
                   f"{_clock(contact['first_seen'])}-{_clock(contact['last_seen'])} UTC, "
                   f"{contact['duration_s'] // 60} min, closest {contact['closest_attenuation_db']} dB, "
                   f"{contact['weighted_minutes']:.0f} weighted min, heard by {contact['heard_by']}"
                   f"{', EXPOSED' if contact['exposed'] else ''}")
        for venue in report["venues"]:
            detail(f"  visited {venue['name']} ({venue['place']}) {_clock(venue['start'])}-{_clock(venue['end'])} UTC")
            for visitor in venue["visitors"]:
                detail(f"    also there: {names.get(visitor['serial'], visitor['serial'])}, "
                       f"{visitor['overlap_s'] // 60} min overlap")
        to_call = ", ".join(names.get(e["serial"], e["serial"]) for e in report["exposed"]) or "nobody"
        detail(f"  wearers to call: {to_call}")
        for flag in report.get("flags", []):
            detail(f"  flagged: {flag['kind']} {flag.get('detail', '')}")

    def statuses(self) -> None:
        say("Clinic screen: each wearer's exposure status")
        self.summary["status"] = {}
        for name in WEARERS:
            status = self.run("tokentool", "status", self.tokens[name]["serial"])
            self.summary["status"][name] = status
            detail(f"{name:7} {status.get('message') or status['status']}")

    def simulation(self) -> None:
        say("Planning: a small simulated community (the same firmware and matching code)")
        population, days = ("200", "2") if self.quick else ("1000", "3")
        out = self.workdir / "simulation"
        result = self.run("tokentool", "simulate", "--population", population, "--days", days,
                          "--seed", "7", "--out", str(out), timeout_s=600)
        self.summary["simulation"] = result
        detail(_simulation_line(result))
        detail(f"report with plots: {out}")

    def stop(self) -> None:
        for name, info in self.tokens.items():
            subprocess.run([str(BIN / "tokentool"), "virtual", "stop", "--state", info["state"]],
                           env=self.env, capture_output=True, timeout=60)
        if self.clinic_air is not None and self.clinic_air.poll() is None:
            self.clinic_air.terminate()
            try:
                self.clinic_air.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.clinic_air.kill()
        if self.service is not None and self.service.poll() is None:
            self.service.send_signal(signal.SIGINT)
            try:
                self.service.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.service.kill()


def _entries(result) -> list[dict]:
    if isinstance(result, list):
        return result
    for key in ("tokens", "results"):
        if isinstance(result, dict) and key in result:
            return result[key]
    return [result]


def _clock(unix_s: float) -> str:
    return time.strftime("%H:%M", time.gmtime(unix_s))


def _simulation_line(result: dict) -> str:
    summary = result.get("summary", result)
    parts = []
    for key, label in (("wearers", "wearers"), ("days", "days"), ("recall", "recall"),
                       ("precision", "precision"), ("venue_recall", "venue recall")):
        value = summary.get(key)
        if isinstance(value, float):
            parts.append(f"{label} {value:.2f}")
        elif value is not None:
            parts.append(f"{label} {value}")
    return ", ".join(parts) or json.dumps(summary)[:200]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=REPO_ROOT / "state" / "demo")
    parser.add_argument("--day-seconds", type=float, default=60,
                        help="real seconds for the simulated day (default 60)")
    parser.add_argument("--quick", action="store_true", help="smaller simulation at the end")
    args = parser.parse_args(argv)
    if args.workdir.exists():
        shutil.rmtree(args.workdir)
    args.workdir.mkdir(parents=True)
    demo = Demo(args.workdir, args.day_seconds, args.quick)
    began = time.monotonic()
    try:
        demo.start_service()
        demo.start_tokens()
        demo.provision()
        demo.hand_out()
        demo.let_the_day_pass()
        demo.clinic_sync()
        case_id = demo.report_positive()
        demo.case_report(case_id)
        demo.statuses()
        demo.simulation()
    except DemoFailed as error:
        print(f"\ndemo: {error}", file=sys.stderr)
        return 1
    finally:
        demo.stop()
        demo.summary["tokens"] = {name: info.get("serial") for name, info in demo.tokens.items()}
        (args.workdir / "summary.json").write_text(json.dumps(demo.summary, indent=2, default=str))
    say(f"Done in {time.monotonic() - began:.0f} s. Everything it made is in {args.workdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
