"""`python -m host_tools.air`: run the virtual air until interrupted."""
from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from host_tools.air.model import Scenario, load_scenario
from host_tools.air.server import Air
from host_tools.errors import TokenToolError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m host_tools.air", description=__doc__)
    parser.add_argument("--socket", required=True, help="unix socket path devices connect to")
    parser.add_argument("--scenario", help="scenario JSON: placements, movement, path loss, time scale")
    parser.add_argument("--time-scale", type=float, help="token seconds per host second (overrides the scenario)")
    parser.add_argument("--seed", type=int, help="seed for RSSI noise and advertising jitter")
    parser.add_argument("--tick-ms", type=float, default=20.0, help="radio tick, host milliseconds")
    args = parser.parse_args(argv)
    try:
        scenario = load_scenario(args.scenario) if args.scenario else Scenario()
        if args.time_scale is not None:
            if not 0 < args.time_scale <= 100_000:
                raise TokenToolError("--time-scale must be in (0, 100000].")
            scenario.time_scale = args.time_scale
    except TokenToolError as error:
        print(f"air: {error}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, format="air: %(message)s")
    air = Air(scenario, args.socket, seed=args.seed, tick_s=args.tick_ms / 1000.0)
    try:
        asyncio.run(air.serve())
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
