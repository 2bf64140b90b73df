"""`matching-service`: run the server and its operator commands.

    matching-service serve [--db URL] [--host H] [--port P] [--data-dir DIR]
    matching-service migrate
    matching-service create-key --role clinic|official|admin [--label L] [--rate-limit N]
    matching-service revoke-key KEY_ID
    matching-service import-keys FILE.zip [--public-key PEM]
    matching-service export --out FILE.zip
    matching-service prune [--older-than-days 21]
    matching-service openapi [--out docs/openapi.json]

Every command reads the same settings (environment, MATCHING_*; flags win). Errors are one line
on stderr, `matching-service: <sentence>`, with a non-zero exit code.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import sqlalchemy.exc

from matching_service import RequestError, ServiceError, SettingsError, settings as settings_mod


def _settings(args) -> settings_mod.Settings:
    return settings_mod.load(db_url=getattr(args, "db", None), host=getattr(args, "host", None),
                             port=getattr(args, "port", None),
                             data_dir=getattr(args, "data_dir", None))


def _print(args, data: dict, text: str) -> None:
    if getattr(args, "json", False):
        print(json.dumps(data, sort_keys=True))
    else:
        print(text)


def cmd_serve(args) -> int:
    import uvicorn

    from matching_service.app import create_app

    settings = _settings(args)
    app = create_app(settings)
    print(f"matching-service: serving on http://{settings.host}:{settings.port} "
          f"({app.state.ctx.engine.dialect.name} database)", file=sys.stderr)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=args.log_level,
                access_log=args.log_level == "debug")
    return 0


def cmd_migrate(args) -> int:
    from matching_service import db
    from matching_service.context import open_context

    ctx = open_context(_settings(args))
    revision = db.current_revision(ctx.engine)
    ctx.close()
    _print(args, {"schema_revision": revision}, f"database schema is at revision {revision}")
    return 0


def cmd_create_key(args) -> int:
    from matching_service.auth import audit, keys
    from matching_service.context import open_context
    from matching_service.db import transaction

    ctx = open_context(_settings(args))
    try:
        with transaction(ctx.sessions) as session:
            full, row = keys.create_key(session, args.role, args.label or "", args.rate_limit)
            audit.record(session, None, "create_key", row.key_id, role=args.role, via="cli")
    except ValueError as error:
        raise ServiceError(str(error)) from error
    finally:
        ctx.close()
    _print(args, {"key": full, "key_id": row.key_id, "role": row.role},
           f"{full}\n(role {row.role}, id {row.key_id}; shown once: store it now)")
    return 0


def cmd_revoke_key(args) -> int:
    from matching_service.auth import audit, keys
    from matching_service.context import open_context
    from matching_service.db import transaction

    ctx = open_context(_settings(args))
    try:
        with transaction(ctx.sessions) as session:
            if not keys.revoke_key(session, args.key_id):
                raise ServiceError(f"there is no live API key {args.key_id}")
            audit.record(session, None, "revoke_key", args.key_id, via="cli")
    finally:
        ctx.close()
    _print(args, {"key_id": args.key_id, "revoked": True}, f"revoked API key {args.key_id}")
    return 0


def cmd_import_keys(args) -> int:
    from matching_service.auth import audit
    from matching_service.context import open_context
    from matching_service.db import transaction
    from matching_service.exports import gaen, service
    from matching_service.reports import service as reports

    try:
        data = Path(args.file).read_bytes()
    except OSError as error:
        raise ServiceError(f"cannot read {args.file}: {error.strerror}") from error
    public_key = None
    if args.public_key:
        try:
            public_key = gaen.load_public_key(Path(args.public_key).read_bytes())
        except OSError as error:
            raise ServiceError(f"cannot read {args.public_key}: {error.strerror}") from error
    ctx = open_context(_settings(args))
    try:
        with transaction(ctx.sessions) as session:
            result = service.import_export(session, data, public_key)
            audit.record(session, None, "import_keys", Path(args.file).name, via="cli",
                         keys=result["keys"], verified=result["signature_verified"])
        if result["keys"]:
            reports.rematch_sources(ctx, [f"import:{result['import_id']}"])
    finally:
        ctx.close()
    checked = "signature verified" if result["signature_verified"] else "signature NOT checked (no --public-key)"
    _print(args, result, f"imported {result['keys']} keys from {args.file} (region "
           f"{result['region']}, {result['already_known']} already known, {result['invalid']} "
           f"invalid; {checked})")
    return 0


def cmd_export(args) -> int:
    from matching_service.context import open_context
    from matching_service.exports import service

    ctx = open_context(_settings(args))
    try:
        with ctx.sessions() as session:
            data, count = service.build_export(session, ctx.export_key, ctx.signature_info,
                                               ctx.settings.region)
    finally:
        ctx.close()
    try:
        Path(args.out).write_bytes(data)
    except OSError as error:
        raise ServiceError(f"cannot write {args.out}: {error.strerror}") from error
    _print(args, {"file": args.out, "keys": count}, f"wrote {count} keys to {args.out}")
    return 0


def cmd_prune(args) -> int:
    from matching_service.auth import audit
    from matching_service.context import open_context
    from matching_service.db import transaction
    from matching_service.retention import prune

    if not 15 <= args.older_than_days <= 3650:
        raise ServiceError("--older-than-days must be between 15 and 3650")
    ctx = open_context(_settings(args))
    try:
        with transaction(ctx.sessions) as session:
            result = prune(session, args.older_than_days)
            audit.record(session, None, "prune", f"{args.older_than_days} days", via="cli", **result)
    finally:
        ctx.close()
    _print(args, result, "deleted " + ", ".join(f"{n} {what}" for what, n in result.items())
           + f" older than {args.older_than_days} days")
    return 0


def openapi_document() -> dict:
    """The OpenAPI document, built from an app on a throw-away database."""
    from matching_service.app import create_app
    from matching_service.context import open_context

    with tempfile.TemporaryDirectory() as tmp:
        settings = settings_mod.load(env={}, data_dir=tmp)
        app = create_app(settings, open_context(settings, announce=False))
        try:
            return app.openapi()
        finally:
            app.state.ctx.close()


def cmd_openapi(args) -> int:
    text = json.dumps(openapi_document(), indent=2, sort_keys=True) + "\n"
    if args.out == "-":
        sys.stdout.write(text)
    else:
        Path(args.out).write_text(text)
        print(f"wrote {args.out}", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="matching-service",
                                     description="National matching service for contact-tracing tokens.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    def command(name, handler, help_text):
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--db", help="database URL (sqlite:///FILE or postgresql://...); "
                                    "env MATCHING_DB_URL")
        p.add_argument("--data-dir", help="where the SQLite file and generated dev secrets live; "
                                          "env MATCHING_DATA_DIR")
        p.add_argument("--json", action="store_true", help="print machine-readable JSON")
        p.set_defaults(handler=handler)
        return p

    p = command("serve", cmd_serve, "run the HTTP API")
    p.add_argument("--host", help="address to listen on (default 127.0.0.1); env MATCHING_HOST")
    p.add_argument("--port", type=int, help="port (default 8080); env MATCHING_PORT")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    command("migrate", cmd_migrate, "bring the database schema up to date")
    p = command("create-key", cmd_create_key, "create an API key (printed once)")
    p.add_argument("--role", required=True, choices=["clinic", "official", "admin"])
    p.add_argument("--label", help="who holds it, e.g. 'Clinic Nord, desk 2'")
    p.add_argument("--rate-limit", type=int, help="requests per minute (default: by role)")
    p = command("revoke-key", cmd_revoke_key, "revoke an API key")
    p.add_argument("key_id")
    p = command("import-keys", cmd_import_keys, "ingest a GAEN export zip from a phone-app key server")
    p.add_argument("file")
    p.add_argument("--public-key", help="PEM public key of that server: the signature must verify")
    p = command("export", cmd_export, "write the signed GAEN export of our cases' keys")
    p.add_argument("--out", required=True, help="zip file to write")
    p = command("prune", cmd_prune, "delete logs, keys and results past the retention period")
    p.add_argument("--older-than-days", type=int, default=21,
                   help="retention in days (default 21, at least 15)")
    p = sub.add_parser("openapi", help="print or write the OpenAPI document")
    p.add_argument("--out", default="-", help="file to write (default: stdout)")
    p.set_defaults(handler=cmd_openapi)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except SettingsError as error:
        for problem in error.problems:
            print(f"matching-service: {problem}", file=sys.stderr)
        return 2
    except (ServiceError, RequestError) as error:
        print(f"matching-service: {error}", file=sys.stderr)
        return 1
    except sqlalchemy.exc.OperationalError as error:
        reason = str(error.orig).strip().splitlines()[0] if error.orig else "no answer"
        print(f"matching-service: cannot reach the database ({reason})", file=sys.stderr)
        return 1
    except sqlalchemy.exc.DBAPIError as error:
        reason = str(error.orig).strip().splitlines()[0] if error.orig else type(error).__name__
        print(f"matching-service: the database refused the operation ({reason})", file=sys.stderr)
        return 1
    except OSError as error:
        where = f" {error.filename}" if error.filename else ""
        print(f"matching-service: cannot use{where}: {error.strerror or error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
