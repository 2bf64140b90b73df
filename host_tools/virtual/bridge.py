"""Pseudo-terminals of a virtual token, and the byte pump between them.

Two pty pairs: the user's (its slave path is what `tokentool virtual start` prints and what
mpremote or the sync tools open) and the console (the interpreter's stdin/stdout/stderr and
controlling terminal). The pump copies bytes both ways, unchanged and unpaced, like a USB-serial
chip with no line rate. While nobody has the user's side open, the token's output is dropped
(as a USB-serial adapter drops what arrives with the port closed), so a tool that connects later
never reads a stale backlog.
"""
from __future__ import annotations

import errno
import fcntl
import os
import select
import termios
import tty

_MAX_PENDING = 64 * 1024  # bytes queued towards one side before the excess is dropped
_CHUNK = 4096


def open_user_pty() -> tuple[int, str]:
    """A new pty pair in raw mode; returns (master fd, slave path). The slave is closed here:
    the user's program opens it by path."""
    master, slave = os.openpty()
    try:
        tty.setraw(slave)  # no echo, no line editing: echo would loop the token's output back
        path = os.ttyname(slave)
    finally:
        os.close(slave)
    os.set_blocking(master, False)
    return master, path


def open_console_pty() -> tuple[int, int]:
    """A new pty pair for the interpreter: raw, except that 0x03 raises SIGINT (ISIG, VINTR)
    as an ESP32's USB console turns Ctrl-C into KeyboardInterrupt. VQUIT and VSUSP are off so
    no other byte signals the interpreter."""
    master, slave = os.openpty()
    tty.setraw(slave)
    attrs = termios.tcgetattr(slave)
    attrs[3] |= termios.ISIG
    attrs[6][termios.VINTR] = 3
    attrs[6][termios.VQUIT] = 0
    attrs[6][termios.VSUSP] = 0
    termios.tcsetattr(slave, termios.TCSANOW, attrs)
    os.set_blocking(master, False)
    return master, slave


def make_controlling_terminal() -> None:
    """preexec_fn for the interpreter: new session, stdin (the console pty) as its terminal."""
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def user_connected(master: int) -> bool:
    """True while some process has the user's slave open (the master reports HUP otherwise)."""
    probe = select.poll()
    probe.register(master, select.POLLIN)
    for _fd, events in probe.poll(0):
        if events & select.POLLHUP:
            return False
    return True


class Pipe:
    """Bytes queued for one non-blocking fd; bounded, drops the excess."""

    def __init__(self) -> None:
        self.pending = bytearray()
        self.dropped = 0

    def queue(self, data: bytes) -> None:
        room = _MAX_PENDING - len(self.pending)
        if len(data) > room:
            self.dropped += len(data) - room
            data = data[:room]
        self.pending += data

    def flush(self, fd: int) -> None:
        while self.pending:
            try:
                written = os.write(fd, self.pending[:_CHUNK])
            except BlockingIOError:
                return
            except OSError as error:
                if error.errno in (errno.EIO, errno.EBADF):
                    self.pending.clear()
                    return
                raise
            del self.pending[:written]


def read_some(fd: int) -> bytes | None:
    """Up to one chunk from fd; b"" when nothing is there now; None when the far side is gone."""
    try:
        data = os.read(fd, _CHUNK)
    except BlockingIOError:
        return b""
    except OSError as error:
        if error.errno == errno.EIO:
            return None
        raise
    return data if data else None
