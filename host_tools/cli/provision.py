"""`tokentool provision --port P --role wearable|venue [--escrow|--private]`: give tokens their
identity (serial, escrow seed, per-token auth key, TX calibration) and record it in the clinic
keystore and outbox for registration with the service."""
from __future__ import annotations

import argparse
import json
import secrets

from host_tools.cli.output import add_json_flag
from host_tools.cli.sync import add_outbox_argument
from host_tools.cli.tokens import Reporter, add_port_argument, connect, run_on_ports
from host_tools.errors import TokenToolError, UsageError
from host_tools.keystore import Keystore, TokenSecrets
from host_tools.micropython import BOARDS_DIR
from host_tools.outbox import Outbox


def add_keystore_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--keystore", metavar="PATH",
                        help="clinic keystore (default $TOKENTOOL_KEYSTORE or ~/.local/share/tokentool/keystore.sqlite)")


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "provision", help="give tokens a serial, identity and auth key",
        description="Generate a serial, an escrow seed (escrowed tokens) and a per-token auth key, write "
                    "them to the token, and keep them in the clinic keystore for registration. "
                    "Re-provisioning a token needs its current auth key from the keystore.")
    add_port_argument(parser)
    parser.add_argument("--role", choices=("wearable", "venue"), required=True)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--escrow", dest="identity", action="store_const", const="escrowed",
                      help="TEKs derived from a seed escrowed with the service (default)")
    mode.add_argument("--private", dest="identity", action="store_const", const="private",
                      help="random TEKs: decentralized matching only")
    parser.set_defaults(identity="escrowed")
    parser.add_argument("--tx-power", type=int, metavar="DBM",
                        help="calibrated TX power for the AEM metadata (default: the board's calibration)")
    parser.add_argument("--board", help="board name (boards/NAME/board.json) for TX calibration and the record")
    parser.add_argument("--profile", choices=("continuous", "burst"),
                        help="a wearable's power profile: continuous (default on a new token) or burst "
                             "(deep sleep between one-minute wakes; docs/ble.md); default: keep the token's")
    add_keystore_argument(parser)
    add_outbox_argument(parser)
    add_json_flag(parser)
    parser.set_defaults(handler=_provision)


def new_serial() -> str:
    return "TT-" + secrets.token_hex(4).upper()


def _board_tx_power(board: str | None) -> int | None:
    if not board:
        return None
    path = BOARDS_DIR / board / "board.json"
    try:
        return int(json.loads(path.read_text())["radio"]["tx_power_dbm"])
    except FileNotFoundError:
        raise UsageError(f"unknown board {board}: there is no {path}") from None
    except (KeyError, ValueError, TypeError):
        raise UsageError(f"{path} has no radio.tx_power_dbm calibration") from None


def provision_port(port: str, args: argparse.Namespace, reporter: Reporter) -> dict:
    if args.role == "venue" and args.profile:
        raise UsageError("--profile is for wearables: a venue beacon only advertises")
    tx_power = args.tx_power if args.tx_power is not None else _board_tx_power(args.board)
    if tx_power is not None and not -127 <= tx_power <= 20:
        raise UsageError(f"--tx-power {tx_power} is outside -127..20 dBm")
    reporter.stage("connecting")
    transport, client = connect(port, args)
    keystore = Keystore(args.keystore)
    try:
        info = client.info()
        old_serial = info.get("serial") if info.get("provisioned") else None
        old_key = keystore.auth_key(old_serial) if old_serial else None
        if tx_power is None:
            tx_power = info.get("tx_power_dbm") if isinstance(info.get("tx_power_dbm"), int) else -8
        board = args.board or info.get("board")
        secrets_ = TokenSecrets(
            serial=new_serial(), auth_key=secrets.token_bytes(32),
            seed=secrets.token_bytes(16) if args.identity == "escrowed" else None,
            role=args.role, identity=args.identity, tx_power_dbm=tx_power, board=board)
        # Keep the secrets before the token does: a crash after writing the token but before
        # saving here would leave a token nobody can authenticate to.
        keystore.add(secrets_)
        identity = {"serial": secrets_.serial, "role": args.role, "identity": args.identity,
                    "auth_key": secrets_.auth_key.hex(), "tx_power_dbm": tx_power}
        if secrets_.seed is not None:
            identity["seed"] = secrets_.seed.hex()
        if board:
            identity["board"] = str(board)[:40]
        if args.profile:
            identity["profile"] = args.profile
        reporter.stage("writing identity")
        answer = client.provision(identity, auth_key=old_key)
        if answer.get("serial") != secrets_.serial:
            raise TokenToolError(f"the token on {port} did not confirm serial {secrets_.serial}; run provision again")
        with Outbox(args.outbox) as outbox:
            outbox.add_provision(secrets_.serial, role=args.role, identity=args.identity, board=board,
                                 tx_power_dbm=tx_power, firmware=client.hello.firmware if client.hello else None)
        return {"serial": secrets_.serial, "role": args.role, "identity": args.identity, "tx_power_dbm": tx_power,
                "board": board, "profile": "venue" if args.role == "venue" else answer.get("profile"), "previous_serial": old_serial, "keystore": str(keystore.path)}
    finally:
        keystore.close()
        transport.close()


def _provision(args: argparse.Namespace) -> int:
    return run_on_ports(
        args, lambda port, reporter: provision_port(port, args, reporter), title="provision",
        sentence=lambda r: (f"{r['port']}: provisioned {r['serial']} ({r['role']}, {r['identity']}, "
                            f"TX {r['tx_power_dbm']} dBm); secrets kept in {r['keystore']}"),
        columns=[("serial", "serial"), ("role", "role"), ("identity", "identity"), ("profile", "profile")])
