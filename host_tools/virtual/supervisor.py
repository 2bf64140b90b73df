"""The virtual token's supervisor: one background process per running token.

It plays everything around the chip: power (it starts the interpreter and restarts it when it
exits: the virtual soft reset or reboot), the USB-serial bridge (user pty <-> console pty), and
the token's window onto the air (a unix socket the virtual HAL talks to, see
boards/virtual/hal_virtual.py for the line protocol).

Started by `host_tools.virtual.control.start` with a pipe on `--ready-fd`: it writes one line,
`ready {json}` once the interpreter has booted, or `error <sentence>`, then closes the pipe.
SIGTERM stops it cleanly: the interpreter is ended, the state files describing the running token
are removed, the flash image stays.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from host_tools import micropython
from host_tools.errors import TokenToolError
from host_tools.virtual import bridge
from host_tools.virtual.air import Air, write_atomic

VBOOT = micropython.BOARDS_DIR / "virtual" / "vboot.py"
UNSET_RTC_S = 946684800  # an ESP32's RTC after power-on reads 2000-01-01 00:00:00
ADV_PERIOD_S = 0.25  # every nearby device advertises about every 250 ms
MAX_REPORTS_PER_DRAIN = 256
BOOT_TIMEOUT_S = 30.0
DEFAULT_BATTERY_MV = 4000
SOCKET_PATH_MAX = 100  # sun_path is 108 bytes; keep a margin


class RadioState:
    """What this token's radio hears, from the scenario and the air."""

    def __init__(self, air: Air, noise_db: float, seed: int | None = None) -> None:
        self.air = air
        self.noise_db = noise_db
        self.rng = random.Random(seed)
        self.scan_end = None
        self.last_drain = None
        self.delivered: set[int] = set()
        self.advertising: bytes | None = None
        self.interval_ms = 0

    def advertise(self, adv: bytes | None, interval_ms: int) -> None:
        self.advertising = adv
        self.interval_ms = interval_ms
        self.air.publish(adv, interval_ms)

    def scan(self, duration_ms: int) -> None:
        now = self.air.world.elapsed()
        self.last_drain = now
        self.scan_end = now + duration_ms / 1000

    def _rssi(self, base: int) -> int:
        noisy = round(base + self.rng.gauss(0, self.noise_db)) if self.noise_db else base
        return max(-127, min(20, noisy))

    def reports(self) -> list[tuple[bytes, int]]:
        """Reports heard since the last drain of the current scan window."""
        if self.last_drain is None:
            return []
        now = self.air.world.elapsed()
        t0, t1 = self.last_drain, min(now, self.scan_end)
        if now >= self.scan_end:
            self.last_drain = None
        else:
            self.last_drain = t1
        if t1 <= t0:
            return []
        per_device = max(1, int((t1 - t0) / ADV_PERIOD_S))
        found: list[tuple[bytes, int]] = []
        name = self.air.name
        for contact in self.air.scenario.contacts:
            if name not in contact.names or contact.from_s > t1 or contact.to_s < t0:
                continue
            for other in contact.names:
                if other == name:
                    continue
                adv = self.air.advertisement_of(other)
                if adv is None:
                    continue
                for _ in range(per_device):
                    found.append((adv, self._rssi(contact.rssi)))
        for index, sighting in enumerate(self.air.scenario.sightings):
            if sighting.name != name or index in self.delivered:
                continue
            if sighting.at_s <= t1 and sighting.to_s >= t0:
                self.delivered.add(index)
                found.append((sighting.adv, self._rssi(sighting.rssi)))
        return found[:MAX_REPORTS_PER_DRAIN]


class Supervisor:
    def __init__(self, args: argparse.Namespace) -> None:
        self.state = Path(args.state).resolve()
        self.name = args.name
        self.board = args.board
        self.clock_mode = args.clock
        self.cut_after_writes = args.cut_after_writes
        self.ready_fd = args.ready_fd
        self.heap_bytes = args.heap_bytes
        self.flash = self.state / "flash.img"
        self.socket_path = self.state / "radio.sock"
        self.air = Air.join(Path(args.air).resolve(), self.name, args.scenario, args.time_scale,
                            pid=os.getpid())
        self.radio = RadioState(self.air, noise_db=args.rssi_noise_db, seed=args.seed)
        self.rtc_offset_s = self._power_on_offset(self.clock_mode)
        self.proc: subprocess.Popen | None = None
        self.console_fd: int | None = None
        try:
            self.user_fd, self.pty_path = bridge.open_user_pty()
        except OSError as error:
            raise TokenToolError(f"cannot allocate a pseudo-terminal for the console: {error.strerror or error}") from None
        self.user_present = False
        self.to_user = bridge.Pipe()
        self.to_console = bridge.Pipe()
        self.clients: dict[int, tuple[socket.socket, bytearray]] = {}
        self.stopping = False
        self.booted = False
        self.boots = 0
        self.started_at = 0.0
        self.quick_exits = 0
        self.restart_at: float | None = None
        self.led_count = 0
        self.deep_sleeps = 0
        self.listener = self._listen()

    # -- setup ---------------------------------------------------------------------------
    def _power_on_offset(self, mode: str) -> float:
        if mode == "set":
            return 0.0
        return UNSET_RTC_S - self.air.world.now()

    def _listen(self) -> socket.socket:
        try:
            self.socket_path.unlink()
        except FileNotFoundError:
            pass
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(self._socket_name())
        listener.listen(8)
        listener.setblocking(False)
        return listener

    def _socket_name(self) -> str:
        # The interpreter and this process both run with cwd = state dir, so a long state path
        # can fall back to the relative name (sun_path holds only 108 bytes).
        full = str(self.socket_path)
        return full if len(full.encode()) <= SOCKET_PATH_MAX else self.socket_path.name

    # -- the interpreter -------------------------------------------------------------------
    def spawn(self) -> None:
        master, slave = bridge.open_console_pty()
        env = dict(os.environ)
        env.pop("MICROPYPATH", None)
        env.update(VTOKEN_FLASH=str(self.flash), VTOKEN_SOCKET=self._socket_name(),
                   VTOKEN_NAME=self.name)
        if self.cut_after_writes is not None:
            env["VTOKEN_CUT_AFTER_WRITES"] = str(self.cut_after_writes)
        else:
            env.pop("VTOKEN_CUT_AFTER_WRITES", None)
        try:
            self.proc = subprocess.Popen(
                micropython.command(VBOOT, heap_bytes=self.heap_bytes, interactive=True), stdin=slave, stdout=slave,
                stderr=slave, cwd=self.state, env=env, preexec_fn=bridge.make_controlling_terminal,
                close_fds=True)
        finally:
            os.close(slave)
        self.console_fd = master
        self.started_at = time.monotonic()
        self.boots += 1
        log(f"interpreter started (pid {self.proc.pid}, boot {self.boots})")

    def _reap(self) -> None:
        """The interpreter exited: flush its last output, schedule a restart."""
        code = self.proc.returncode
        if self.console_fd is not None:
            while True:
                data = bridge.read_some(self.console_fd)
                if not data:
                    break
                self._to_user(data)
            os.close(self.console_fd)
            self.console_fd = None
        self.to_console.pending.clear()
        log(f"interpreter exited with code {code}")
        self.proc = None
        ran_s = time.monotonic() - self.started_at
        self.quick_exits = self.quick_exits + 1 if ran_s < 2 else 0
        delay = 0.1 if self.quick_exits < 3 else min(5.0, 0.5 * self.quick_exits)
        self.restart_at = time.monotonic() + delay

    def power_cut(self) -> None:
        """Injected power loss reached the flash: the chip is dead until power returns. Kill
        the interpreter; the restart is a cold boot (RTC lost, no further injected cut)."""
        log("power cut injected: cold boot")
        self.cut_after_writes = None
        self.rtc_offset_s = self._power_on_offset("unset")
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()

    def _to_user(self, data: bytes) -> None:
        if self.user_present:
            self.to_user.queue(data)

    # -- the HAL's socket --------------------------------------------------------------------
    def answer(self, line: bytes) -> bytes:
        op, _, rest = line.strip().partition(b" ")
        if op == b"hello":
            world = self.air.world
            fast_for_s = -1.0 if world.fast_for_s is None else world.fast_for_s
            return b"ok %.3f %.6f %.3f %.3f %.3f %s" % (world.start_s, world.time_scale, world.host_epoch_s,
                                                        self.rtc_offset_s, fast_for_s, self.name.encode())
        if op == b"boot":
            self._booted()
            return b"ok"
        if op == b"clock":
            self.rtc_offset_s = float(rest)
            return b"ok"
        if op == b"adv":
            hex_adv, _, interval = rest.partition(b" ")
            self.radio.advertise(bytes.fromhex(hex_adv.decode()), int(interval or 0))
            return b"ok"
        if op == b"noadv":
            self.radio.advertise(None, 0)
            return b"ok"
        if op == b"scan":
            self.radio.scan(int(rest))
            return b"ok"
        if op == b"noscan":
            self.radio.last_drain = None
            return b"ok"
        if op == b"reports":
            lines = [b"%s %d" % (adv.hex().encode(), rssi) for adv, rssi in self.radio.reports()]
            return b"\n".join(lines + [b"."])
        if op == b"led":
            self.led_count += 1
            write_atomic(self.state / "led.json", json.dumps(
                {"pattern": rest.decode("utf-8", "replace"), "world_s": self.air.world.now(),
                 "count": self.led_count}).encode())
            return b"ok"
        if op == b"button":
            return b"ok 1" if (self.state / "button").exists() else b"ok 0"
        if op == b"battery":
            try:
                millivolts = int((self.state / "battery_mv").read_text().strip())
            except (OSError, ValueError):
                millivolts = DEFAULT_BATTERY_MV
            return b"ok %d" % millivolts
        if op == b"usb":
            # The virtual USB cable: a host holding the console port open powers the token.
            return b"ok 1" if self.user_present else b"ok 0"
        if op == b"sleep":
            self.deep_sleeps += 1
            log(f"deep sleep {int(rest)} ms (sleep {self.deep_sleeps})")
            return b"ok"
        if op == b"powercut":
            self.power_cut()
            return b"ok"
        return b"error unknown request"

    def _serve_client(self, fd: int) -> None:
        sock, buffer = self.clients[fd]
        try:
            data = sock.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._drop_client(fd)
            return
        buffer += data
        while b"\n" in buffer:
            line, _, rest = bytes(buffer).partition(b"\n")
            buffer[:] = rest
            try:
                reply = self.answer(line)
            except (ValueError, OSError) as error:
                reply = b"error " + str(error).encode()[:200]
            try:
                sock.setblocking(True)
                sock.sendall(reply + b"\n")
                sock.setblocking(False)
            except OSError:
                self._drop_client(fd)
                return

    def _drop_client(self, fd: int) -> None:
        sock, _ = self.clients.pop(fd)
        sock.close()

    def _booted(self) -> None:
        if self.booted:
            return
        self.booted = True
        info = self.info()
        write_atomic(self.state / "token.json", json.dumps(info, sort_keys=True, indent=1).encode())
        self._signal_ready("ready " + json.dumps(info, sort_keys=True))

    def info(self) -> dict:
        return {"pty": self.pty_path, "state": str(self.state), "pid": os.getpid(), "name": self.name,
                "board": self.board, "air": str(self.air.path), "socket": str(self.socket_path),
                "flash": str(self.flash), "time_scale": self.air.world.time_scale,
                "heap_bytes": self.heap_bytes}

    def _signal_ready(self, line: str) -> None:
        if self.ready_fd is None:
            return
        try:
            os.write(self.ready_fd, line.encode() + b"\n")
            os.close(self.ready_fd)
        except OSError:
            pass
        self.ready_fd = None

    # -- main loop ---------------------------------------------------------------------------
    def run(self) -> None:
        write_atomic(self.state / "pty", self.pty_path.encode() + b"\n")
        self.spawn()
        deadline = time.monotonic() + BOOT_TIMEOUT_S
        last_probe = 0.0
        while not self.stopping:
            now = time.monotonic()
            if not self.booted and now > deadline:
                raise TokenToolError(
                    f"the virtual token did not boot within {BOOT_TIMEOUT_S:.0f} s; see {self.state / 'supervisor.log'}")
            if now - last_probe > 0.05:
                last_probe = now
                present = bridge.user_connected(self.user_fd)
                if present and not self.user_present:
                    self.to_user.pending.clear()
                self.user_present = present
            poller = select.poll()
            if self.user_present:
                poller.register(self.user_fd, select.POLLIN | (select.POLLOUT if self.to_user.pending else 0))
            if self.console_fd is not None:
                poller.register(self.console_fd,
                                select.POLLIN | (select.POLLOUT if self.to_console.pending else 0))
            poller.register(self.listener.fileno(), select.POLLIN)
            for fd in self.clients:
                poller.register(fd, select.POLLIN)
            try:
                events = poller.poll(50)
            except InterruptedError:
                continue
            for fd, mask in events:
                if fd == self.user_fd:
                    if mask & select.POLLHUP and not mask & select.POLLIN:
                        self.user_present = False  # the user closed the port
                        continue
                    if mask & select.POLLIN:
                        data = bridge.read_some(fd)
                        if data is None:
                            self.user_present = False
                        elif data and self.console_fd is not None:
                            self.to_console.queue(data)
                    if mask & select.POLLOUT:
                        self.to_user.flush(fd)
                elif fd == self.console_fd:
                    if mask & (select.POLLIN | select.POLLHUP | select.POLLERR):
                        data = bridge.read_some(fd)
                        if data:
                            self._to_user(data)
                    if mask & select.POLLOUT and self.console_fd is not None:
                        self.to_console.flush(fd)
                elif fd == self.listener.fileno():
                    try:
                        sock, _ = self.listener.accept()
                    except BlockingIOError:
                        continue
                    sock.setblocking(False)
                    self.clients[sock.fileno()] = (sock, bytearray())
                elif fd in self.clients:
                    self._serve_client(fd)
            if self.user_present and self.to_user.pending:
                self.to_user.flush(self.user_fd)
            if self.console_fd is not None and self.to_console.pending:
                self.to_console.flush(self.console_fd)
            if self.proc is not None and self.proc.poll() is not None:
                self._reap()
            if self.proc is None and self.restart_at is not None and time.monotonic() >= self.restart_at:
                self.restart_at = None
                self.spawn()

    def shutdown(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(2)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for fd in list(self.clients):
            self._drop_client(fd)
        self.listener.close()
        for name in ("token.json", "pty", "radio.sock"):
            try:
                (self.state / name).unlink()
            except FileNotFoundError:
                pass
        self.air.leave()
        os.close(self.user_fd)
        if self.console_fd is not None:
            os.close(self.console_fd)
        log("stopped")


def log(message: str) -> None:
    print(time.strftime("%Y-%m-%d %H:%M:%S ") + message, flush=True)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m host_tools.virtual.supervisor")
    parser.add_argument("--state", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--board", default="virtual")
    parser.add_argument("--air", required=True)
    parser.add_argument("--scenario")
    parser.add_argument("--time-scale", type=float)
    parser.add_argument("--clock", choices=("set", "unset"), default="set")
    parser.add_argument("--cut-after-writes", type=int)
    parser.add_argument("--rssi-noise-db", type=float, default=2.0)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--ready-fd", type=int)
    parser.add_argument("--heap-bytes", type=int, default=micropython.ESP32_HEAP_BYTES)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    os.chdir(args.state)
    supervisor = None

    def stop(_signum, _frame):
        if supervisor is not None:
            supervisor.stopping = True
        else:
            raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        supervisor = Supervisor(args)
        log(f"supervising {args.name}: pty {supervisor.pty_path}")
        supervisor.run()
    except TokenToolError as error:
        log(f"error: {error}")
        if supervisor is not None:
            supervisor._signal_ready(f"error {error}")
        elif args.ready_fd is not None:
            os.write(args.ready_fd, f"error {error}\n".encode())
        if supervisor is not None:
            supervisor.shutdown()
        return 1
    except Exception as error:  # noqa: BLE001 - the CLI must get a sentence, the log the details
        import traceback

        traceback.print_exc()
        message = f"the virtual token supervisor failed: {type(error).__name__}: {error}"
        if supervisor is not None:
            supervisor._signal_ready(f"error {message}")
            supervisor.shutdown()
        elif args.ready_fd is not None:
            os.write(args.ready_fd, f"error {message}\n".encode())
        return 1
    supervisor.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
