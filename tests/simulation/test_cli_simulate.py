"""`tokentool simulate` as a planner uses it: one sentence or JSON, a report folder with plots,
and one clear line for bad input."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from host_tools.simulation.report import PLOTS

TOKENTOOL = [str(Path(sys.executable).with_name("tokentool"))]


def tokentool(*args: str):
    return subprocess.run([*TOKENTOOL, *args], capture_output=True, text=True, timeout=300)


def test_simulate_prints_json_and_writes_the_report_folder(tmp_path):
    out = tmp_path / "report"
    done = tokentool("simulate", "--population", "80", "--days", "1", "--venues", "5", "--seed", "3",
                     "--out", str(out), "--json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["wearers"] == 80 and data["days"] == 1 and data["venues"] == 5
    assert data["profile"] == "continuous"
    for key in ("recall", "precision", "venue_recall", "battery_days", "flash_bytes_per_day", "retention_days"):
        assert key in data
    assert set(data["battery_days"]) == {"esp32-devkitc", "esp32-c3", "esp32-s3"}
    assert data["report"] == str(out)
    for name in (*PLOTS, "summary.md", "results.json"):
        assert (out / name).stat().st_size > 0, name
    assert (out / PLOTS[0]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = (out / "summary.md").read_text()
    assert "80 wearers" in summary and "| continuous |" in summary
    assert json.loads((out / "results.json").read_text())["wearers"] == 80


def test_simulate_speaks_one_sentence_without_json():
    done = tokentool("simulate", "--population", "40", "--days", "1", "--venues", "3")
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("\n") == 1
    assert "40 wearers, 1 days" in done.stdout and "truly exposed" in done.stdout


def test_bad_arguments_get_one_line_and_a_non_zero_exit(tmp_path, capsys):
    from host_tools.cli import main

    cases = [
        (("--population", "many"), "--population must be a whole number"),
        (("--population", "1"), "population must be between"),
        (("--days", "90"), "days must be between 1 and 28"),
        (("--profile", "turbo"), "unknown power profile 'turbo'"),
        (("--board", "esp8266"), "unknown board 'esp8266'"),
        (("--escrowed-share", "nan"), "--escrowed-share must be a number"),
        (("--positive-share", "0"), "share testing positive"),
        (("--clock-sync-days", "60"), "clock sync interval must be between"),
        (("--clock-sync-days", "weekly"), "--clock-sync-days must be a number"),
    ]
    for args, message in cases:
        assert main(["simulate", *args]) == 2, args
        err = capsys.readouterr().err
        assert err.startswith("tokentool: ") and message in err, (args, err)
        assert err.count("\n") == 1
    # As a user sees it: a subprocess, a folder that cannot be written, no traceback, nothing
    # overwritten.
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    done = tokentool("simulate", "--population", "20", "--days", "1", "--venues", "2", "--out", str(blocked))
    assert done.returncode == 2 and "cannot write the report folder" in done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert blocked.read_text() == "not a folder"
