"""A pty <-> pty bridge between a user (tokentool, mpremote) and a token's port, with the line
rate of a real UART and injectable faults: a cable pulled, bytes dropped or corrupted.

    with SerialBridge("/dev/pts/7", baud=115200) as bridge:
        run_tool(bridge.path)                  # the user opens bridge.path instead of the token
        bridge.faults.cut_after_to_host = 5000  # pull the cable after 5000 bytes towards the user

Each direction has its own thread and its own byte budget of baud / 10 bytes per second (8N1:
start bit, 8 data bits, stop bit), so a 115200-baud link carries at most 11,520 bytes/s each way,
as a USB-serial chip at that rate does. Faults are drawn from a seeded RNG: runs are repeatable.

`python -m host_tools.serialbridge TOKEN_PORT --baud 115200` runs one by hand and prints its path.
"""
from __future__ import annotations

import argparse
import errno
import os
import random
import select
import sys
import threading
import time
import tty
from dataclasses import dataclass, field

_SLICE = 64  # bytes written per pacing step: ~5.6 ms at 115200 baud


@dataclass
class Faults:
    """What goes wrong on the line. Rates are per byte; counts say what was done."""

    drop_rate_to_token: float = 0.0
    drop_rate_to_host: float = 0.0
    corrupt_rate_to_token: float = 0.0
    corrupt_rate_to_host: float = 0.0
    cut_after_to_host: int | None = None  # pull the cable after this many bytes towards the user
    seed: int = 1
    dropped: int = 0
    corrupted: int = 0
    rng: random.Random = field(default_factory=random.Random)

    def __post_init__(self) -> None:
        self.rng.seed(self.seed)

    def apply(self, data: bytes, drop_rate: float, corrupt_rate: float) -> bytes:
        if not drop_rate and not corrupt_rate:
            return data
        out = bytearray()
        for byte in data:
            roll = self.rng.random()
            if roll < drop_rate:
                self.dropped += 1
                continue
            if roll < drop_rate + corrupt_rate:
                self.corrupted += 1
                byte ^= 1 << self.rng.randrange(8)
            out.append(byte)
        return bytes(out)


class SerialBridge:
    def __init__(self, token_port: str, baud: int | None = 115200, faults: Faults | None = None) -> None:
        self.token_port = token_port
        self.baud = baud
        self.faults = faults or Faults()
        self.bytes_to_host = 0
        self.bytes_to_token = 0
        self.cut = False
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)
        self.path = os.ttyname(self._slave)
        # Keep our own handle on the user's side: the master then never reads EIO between two
        # users (tokentool runs, mpremote calls) and the bridge outlives them.
        self._token = os.open(token_port, os.O_RDWR | os.O_NOCTTY)
        tty.setraw(self._token)
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._pump, args=(self._master, self._token, "to_token"), daemon=True),
            threading.Thread(target=self._pump, args=(self._token, self._master, "to_host"), daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def __enter__(self) -> "SerialBridge":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def pull_cable(self) -> None:
        """The cable is pulled: the user's side hangs up, nothing more moves either way."""
        if self.cut:
            return
        self.cut = True
        self._stop.set()
        for fd in (self._master, self._slave):
            try:
                os.close(fd)
            except OSError:
                pass

    def close(self) -> None:
        self.pull_cable()
        try:
            os.close(self._token)
        except OSError:
            pass
        for thread in self._threads:
            thread.join(timeout=2)

    def _pump(self, src: int, dst: int, direction: str) -> None:
        bytes_per_s = self.baud / 10 if self.baud else None
        next_at = time.monotonic()
        faults = self.faults
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select([src], [], [], 0.05)
                if not ready:
                    continue
                data = os.read(src, 4096)
            except OSError as error:
                if error.errno in (errno.EIO, errno.EBADF):
                    if self._stop.is_set():
                        return
                    time.sleep(0.01)  # the other side is between two users
                    continue
                raise
            if not data:
                continue
            if direction == "to_host":
                data = faults.apply(data, faults.drop_rate_to_host, faults.corrupt_rate_to_host)
                if faults.cut_after_to_host is not None and self.bytes_to_host + len(data) >= faults.cut_after_to_host:
                    keep = max(0, faults.cut_after_to_host - self.bytes_to_host)
                    self._write(dst, data[:keep])
                    self.bytes_to_host += keep
                    self.pull_cable()
                    return
            else:
                data = faults.apply(data, faults.drop_rate_to_token, faults.corrupt_rate_to_token)
            for start in range(0, len(data), _SLICE):
                piece = data[start:start + _SLICE]
                if bytes_per_s:
                    now = time.monotonic()
                    next_at = max(next_at, now) + len(piece) / bytes_per_s
                if not self._write(dst, piece):
                    return
                if direction == "to_host":
                    self.bytes_to_host += len(piece)
                else:
                    self.bytes_to_token += len(piece)
                if bytes_per_s:
                    delay = next_at - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)

    def _write(self, fd: int, data: bytes) -> bool:
        view = memoryview(data)
        while view:
            if self._stop.is_set() and fd == self._master:
                return False
            try:
                written = os.write(fd, view)
            except BlockingIOError:
                time.sleep(0.001)
                continue
            except OSError:
                return False
            view = view[written:]
        return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Paced pty bridge in front of a token's port, with fault injection.")
    parser.add_argument("token_port")
    parser.add_argument("--baud", type=int, default=115200, help="line rate; 0 for unpaced")
    parser.add_argument("--drop-rate", type=float, default=0.0, help="fraction of bytes dropped, both ways")
    parser.add_argument("--corrupt-rate", type=float, default=0.0, help="fraction of bytes corrupted, both ways")
    args = parser.parse_args(argv)
    faults = Faults(drop_rate_to_token=args.drop_rate, drop_rate_to_host=args.drop_rate,
                    corrupt_rate_to_token=args.corrupt_rate, corrupt_rate_to_host=args.corrupt_rate)
    bridge = SerialBridge(args.token_port, baud=args.baud or None, faults=faults)
    print(bridge.path, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        bridge.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
