"""`tokentool`: one thin CLI over the host_tools library.

Each command group lives in its own module under host_tools/cli/ and exposes
`register(subparsers)`; this module only wires them together and owns the one error path:
every TokenToolError becomes `tokentool: <sentence>` on stderr and a non-zero exit code.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from host_tools.errors import TokenToolError

# Command-group modules, in the order `tokentool --help` lists them.
COMMAND_MODULES = [
    "host_tools.cli.keys",
    "host_tools.cli.virtual",
    "host_tools.cli.info",
    "host_tools.cli.sync",
    "host_tools.cli.outbox",
    "host_tools.cli.provision",
    "host_tools.cli.token_keys",
    "host_tools.cli.flash",
    "host_tools.cli.deploy",
    "host_tools.cli.recover",
    "host_tools.cli.service",
    "host_tools.cli.scan",
    "host_tools.cli.simulate",
]

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tokentool",
        description="Flash, provision, sync and inspect contact-tracing tokens.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser

def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result = args.handler(args)
    except TokenToolError as error:
        print(f"tokentool: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("tokentool: interrupted", file=sys.stderr)
        return 130
    return int(result or 0)

if __name__ == "__main__":
    sys.exit(main())
