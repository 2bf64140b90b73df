"""Shared plumbing of the commands that talk to tokens: --port (several, or a glob), parallel
batches with one progress line per token and a summary table, and one error per token."""
from __future__ import annotations

import argparse
import json
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from host_tools.errors import TokenToolError, UsageError
from host_tools.transport import expand_ports, open_transport

Work = Callable[[str, "Reporter"], dict]


def add_port_argument(parser: argparse.ArgumentParser, *, several: bool = True) -> None:
    help_text = "serial port of the token (/dev/ttyUSB0, a virtual token's pty)"
    if several:
        help_text += "; repeat it, separate ports with commas or give a glob (/dev/ttyUSB*) for a batch"
    parser.add_argument("--port", action="append", required=True, metavar="PORT", help=help_text)
    parser.add_argument("--baud", type=int, default=115200, help="serial line rate (default 115200)")
    parser.add_argument("--timeout", type=float, default=1.5, metavar="S",
                        help="seconds to wait for an answer before retrying (default 1.5)")


def ports_of(args: argparse.Namespace, *, single: bool = False) -> list[str]:
    ports = expand_ports(args.port)
    if single and len(ports) > 1:
        raise UsageError(f"this command works on one token at a time, got {len(ports)} ports")
    return ports


class Reporter:
    """What a worker tells the user while it runs: a stage and a done/total count."""

    def __init__(self, progress: Any = None, task: Any = None, port: str = "") -> None:
        self._progress = progress
        self._task = task
        self.port = port

    def stage(self, text: str) -> None:
        if self._progress is not None:
            self._progress.update(self._task, description=f"{self.port}: {text}")

    def count(self, done: int, total: int) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=done, total=max(total, 1))


def _progress_wanted(args: argparse.Namespace) -> bool:
    return not getattr(args, "json", False) and sys.stderr.isatty()


def run_on_ports(args: argparse.Namespace, work: Work, *, title: str,
                 sentence: Callable[[dict], str], columns: list[tuple[str, str]]) -> int:
    """Run `work(port, reporter)` on every port (in parallel) and print the outcome.

    One port: its sentence (or JSON), and a failure is raised as the one error. Several: one
    progress line per token while working, then a table (or JSON) and exit code 1 if any failed.
    """
    ports = ports_of(args)
    results: dict[str, dict] = {}
    lock = threading.Lock()

    def one(port: str, reporter: Reporter) -> None:
        try:
            result = work(port, reporter)
            result.setdefault("port", port)
            result["ok"] = True
            reporter.stage("done")
        except TokenToolError as error:
            result = {"port": port, "ok": False, "error": str(error), "exit_code": error.exit_code}
            reporter.stage("failed")
        except Exception as error:  # one token's bug must not hide the others' results
            result = {"port": port, "ok": False, "error": f"{port}: unexpected {type(error).__name__}: {error}",
                      "exit_code": 1}
            reporter.stage("failed")
        with lock:
            results[port] = result

    if _progress_wanted(args):
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=Console(stderr=True), transient=len(ports) == 1) as progress:
            tasks = {port: progress.add_task(f"{port}: {title}", total=None) for port in ports}
            _run_all(ports, lambda port: one(port, Reporter(progress, tasks[port], port)))
    else:
        _run_all(ports, lambda port: one(port, Reporter(port=port)))

    ordered = [results[port] for port in ports]
    if len(ports) == 1:
        result = ordered[0]
        if not result["ok"]:
            error = TokenToolError(result["error"])
            error.exit_code = result["exit_code"]
            raise error
        _emit(args, result, sentence(result))
        return 0
    failed = sum(1 for r in ordered if not r["ok"])
    if getattr(args, "json", False):
        print(json.dumps({"results": ordered, "failed": failed}, sort_keys=True, default=str))
    else:
        _print_table(ordered, title, columns, sentence)
    return 1 if failed else 0


def _run_all(ports: list[str], fn: Callable[[str], None]) -> None:
    if len(ports) == 1:
        fn(ports[0])
        return
    with ThreadPoolExecutor(max_workers=min(8, len(ports))) as pool:
        list(pool.map(fn, ports))


def _emit(args: argparse.Namespace, data: dict, text: str) -> None:
    if getattr(args, "json", False):
        print(json.dumps(data, sort_keys=True, default=str))
    else:
        print(text)


def _print_table(results: list[dict], title: str, columns: list[tuple[str, str]],
                 sentence: Callable[[dict], str]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{title}: {sum(r['ok'] for r in results)} of {len(results)} tokens ok")
    table.add_column("port")
    for _, heading in columns:
        table.add_column(heading)
    table.add_column("result")
    for r in results:
        if r["ok"]:
            table.add_row(r["port"], *[str(r.get(key, "")) for key, _ in columns], "ok")
        else:
            table.add_row(r["port"], *["" for _ in columns], f"[red]{r['error']}[/red]")
    Console(width=160).print(table)


def connect(port: str, args: argparse.Namespace):
    """An open transport and a connected SyncClient for `port` (caller closes the transport)."""
    from host_tools.sync_client import SyncClient

    transport = open_transport(port, baud=getattr(args, "baud", 115200))
    try:
        client = SyncClient(transport, timeout_s=getattr(args, "timeout", 1.5))
        client.connect()
    except BaseException:
        transport.close()
        raise
    return transport, client
