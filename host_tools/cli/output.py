"""Output helpers shared by every command: `--json` for machines, one clear line for people."""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def add_json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")


def emit(args: argparse.Namespace, data: Any, text: str) -> None:
    """Print `data` as JSON when --json was given, else the human sentence `text`."""
    if getattr(args, "json", False):
        json.dump(data, sys.stdout, indent=None, sort_keys=True)
        sys.stdout.write("\n")
    else:
        print(text)
