"""`tokentool virtual start|stop|list`: run the firmware as a virtual token on this machine."""
from __future__ import annotations

import argparse

from host_tools.cli.output import add_json_flag, emit
from host_tools.virtual import control


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "virtual", help="run virtual tokens (the firmware on the MicroPython unix port)",
        description="Run the token firmware under the real MicroPython unix port, with a littlefs "
                    "flash image, its console on a pseudo-terminal and a scenario-fed radio.")
    commands = parser.add_subparsers(dest="virtual_command", metavar="ACTION")
    commands.required = True

    start = commands.add_parser("start", help="start a virtual token in the background")
    start.add_argument("--name", default=control.DEFAULT_NAME, help="token name on the air (default token-1)")
    start.add_argument("--state", help="state directory (default ./state/virtual/NAME)")
    start.add_argument("--scenario", help="scenario file (JSON lines) driving the stand-in radio")
    start.add_argument("--air", help="air directory shared by tokens that should hear each other")
    start.add_argument("--time-scale", type=float, help="world seconds per host second (default 1)")
    start.add_argument("--clock", choices=("set", "unset"), default="set",
                       help="RTC at power-on: world time (set) or 2000-01-01 like a fresh ESP32 (unset)")
    start.add_argument("--board", default="virtual", help="board whose board.json goes on the flash")
    start.add_argument("--keep-firmware", action="store_true",
                       help="do not refresh the firmware files on the flash image from the repository")
    start.add_argument("--cut-after-writes", type=int, metavar="N",
                       help="power-cut injection: the flash loses power after N block writes")
    add_json_flag(start)
    start.set_defaults(handler=_start)

    stop = commands.add_parser("stop", help="stop a running virtual token (its flash is kept)")
    stop.add_argument("--name", default=control.DEFAULT_NAME, help="token name (picks ./state/virtual/NAME)")
    stop.add_argument("--state", help="state directory of the token")
    add_json_flag(stop)
    stop.set_defaults(handler=_stop)

    listing = commands.add_parser("list", help="list virtual tokens under ./state/virtual")
    listing.add_argument("--root", default=str(control.DEFAULT_ROOT), help="where state directories live")
    add_json_flag(listing)
    listing.set_defaults(handler=_list)


def _start(args: argparse.Namespace) -> int:
    info = control.start(
        name=args.name, state=args.state, scenario=args.scenario, air=args.air,
        time_scale=args.time_scale, clock=args.clock, board=args.board,
        refresh_firmware=not args.keep_firmware, cut_after_writes=args.cut_after_writes)
    emit(args, info, f"virtual token {info['name']} running on {info['pty']} (state {info['state']})")
    return 0


def _stop(args: argparse.Namespace) -> int:
    info = control.stop(state=args.state, name=args.name)
    emit(args, {"name": info["name"], "state": info["state"], "stopped": True},
         f"virtual token {info['name']} stopped (flash kept in {info['state']})")
    return 0


def _list(args: argparse.Namespace) -> int:
    tokens = control.list_tokens(args.root)
    if not tokens:
        text = f"no virtual tokens under {args.root}"
    else:
        text = "\n".join(
            f"{t['name']:<16} {'running on ' + t['pty'] if t['running'] else 'stopped':<28} {t['state']}"
            for t in tokens)
    emit(args, {"tokens": tokens}, text)
    return 0
