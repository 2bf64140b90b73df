"""Service settings: read from the environment (and CLI overrides), all validated at start-up.

Every problem is collected and reported together (`SettingsError.problems`), so an operator
fixes a bad deployment in one round instead of one error per restart.

Secrets: the master key encrypts escrowed seeds and token auth keys at rest; the export key
signs GAEN export files. In production the operator supplies both. For a zero-configuration
development run `resolve_secrets()` generates them into the data directory (mode 0600) and
says so on stderr.
"""
from __future__ import annotations

import base64
import binascii
import dataclasses
import os
import re
import sys
from pathlib import Path
from typing import Mapping

from matching_service import SettingsError

ENV_PREFIX = "MATCHING_"
MASTER_KEY_BYTES = 32


@dataclasses.dataclass(frozen=True)
class RiskSettings:
    """GAEN v2-style scoring knobs (see docs/matching.md)."""

    # Attenuation thresholds (dB) splitting IMMEDIATE / NEAR / MEDIUM / OTHER.
    attenuation_thresholds_db: tuple[int, int, int] = (60, 62, 68)
    # Weights of the four buckets, each 0..2.5 as in GAEN v2.
    bucket_weights: tuple[float, float, float, float] = (1.0, 0.5, 0.25, 0.0)
    # A token is exposed at this many weighted minutes on one UTC day (RiskConfig: why 11).
    exposure_threshold_min: float = 11.0
    # RPI join tolerance (10-minute intervals) after clock-drift correction: +-2 h.
    interval_tolerance: int = 12


@dataclasses.dataclass(frozen=True)
class Settings:
    data_dir: Path
    db_url: str
    host: str = "127.0.0.1"
    port: int = 8080
    master_key: bytes | None = None
    master_key_file: Path | None = None
    export_key_file: Path | None = None
    export_key_id: str = "TT"
    export_key_version: str = "v1"
    region: str = "TT"
    max_body_bytes: int = 8 * 1024 * 1024
    max_records_per_upload: int = 50_000
    max_tokens_per_registration: int = 5_000
    # Processes the escrowed scan of a case report may use (it only splits above ~8,000 devices).
    workers: int = 2
    code_ttl_s: int = 48 * 3600
    redeem_failures_per_hour: int = 10
    rate_limit_per_min: dict = dataclasses.field(
        default_factory=lambda: {"clinic": 600, "official": 120, "admin": 120})
    risk: RiskSettings = dataclasses.field(default_factory=RiskSettings)
    generated_secrets: tuple[str, ...] = ()

    @property
    def is_sqlite(self) -> bool:
        return self.db_url.startswith("sqlite")


def _parse_int(problems, name, raw, low, high):
    try:
        value = int(raw)
    except (TypeError, ValueError):
        problems.append(f"{name} must be an integer, got {raw!r}")
        return None
    if not low <= value <= high:
        problems.append(f"{name} must be between {low} and {high}, got {value}")
        return None
    return value


def _parse_master_key(problems, name, raw: str) -> bytes | None:
    text = raw.strip()
    candidates = []
    if re.fullmatch(r"[0-9a-fA-F]{64}", text):
        candidates.append(bytes.fromhex(text))
    else:
        try:
            candidates.append(base64.b64decode(text, validate=True))
        except (binascii.Error, ValueError):
            pass
    for key in candidates:
        if len(key) == MASTER_KEY_BYTES:
            return key
    problems.append(f"{name} must be 32 bytes as 64 hex digits or base64")
    return None


def normalise_db_url(url: str) -> str:
    """Pin the PostgreSQL driver we ship (psycopg2); accept the usual spellings."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg2://" + url[len(prefix):]
    return url


def load(env: Mapping[str, str] | None = None, **overrides) -> Settings:
    """Build Settings from `env` (default os.environ) and explicit overrides (CLI flags).

    Overrides win over the environment; None overrides are ignored. Raises SettingsError
    listing every problem.
    """
    env = dict(os.environ if env is None else env)
    overrides = {k: v for k, v in overrides.items() if v is not None}
    problems: list[str] = []

    def get(key: str, default=None):
        if key in overrides:
            return overrides[key]
        return env.get(ENV_PREFIX + key.upper(), default)

    data_dir = Path(get("data_dir", "var/matching-service")).expanduser()
    db_url = get("db_url") or env.get("DATABASE_URL") or f"sqlite:///{data_dir / 'matching.sqlite3'}"
    db_url = normalise_db_url(str(db_url))
    if not (db_url.startswith("sqlite:///") or db_url.startswith("postgresql+psycopg2://")):
        problems.append(
            f"database URL must start with sqlite:/// or postgresql://, got {db_url.split(':')[0]}:")

    values: dict = {"data_dir": data_dir, "db_url": db_url}
    values["host"] = str(get("host", "127.0.0.1"))
    port = _parse_int(problems, "port", get("port", 8080), 1, 65535)
    ints = {
        "max_body_bytes": (8 * 1024 * 1024, 1024, 1 << 30),
        "max_records_per_upload": (50_000, 1, 10_000_000),
        "max_tokens_per_registration": (5_000, 1, 1_000_000),
        "code_ttl_s": (48 * 3600, 60, 30 * 86400),
        "redeem_failures_per_hour": (10, 1, 10_000),
        "workers": (min(2, os.cpu_count() or 1), 1, 64),
    }
    for key, (default, low, high) in ints.items():
        values[key] = _parse_int(problems, key, get(key, default), low, high)
    limits = {}
    for role, default in (("clinic", 600), ("official", 120), ("admin", 120)):
        limits[role] = _parse_int(problems, f"rate_limit_{role}_per_min",
                                  get(f"rate_limit_{role}_per_min", default), 1, 1_000_000)
    values["rate_limit_per_min"] = limits

    raw_key = get("master_key")
    key_file = get("master_key_file")
    if raw_key and key_file:
        problems.append("set MATCHING_MASTER_KEY or MATCHING_MASTER_KEY_FILE, not both")
    elif raw_key:
        values["master_key"] = _parse_master_key(problems, "MATCHING_MASTER_KEY", str(raw_key))
    elif key_file:
        path = Path(key_file).expanduser()
        values["master_key_file"] = path
        try:
            values["master_key"] = _parse_master_key(
                problems, f"master key file {path}", path.read_text())
        except OSError as error:
            problems.append(f"cannot read master key file {path}: {error.strerror}")
    export_key = get("export_key_file")
    if export_key:
        path = Path(export_key).expanduser()
        values["export_key_file"] = path
        if not path.is_file():
            problems.append(f"export signing key file {path} does not exist")
    values["export_key_id"] = str(get("export_key_id", "TT"))
    values["export_key_version"] = str(get("export_key_version", "v1"))
    region = str(get("region", "TT"))
    if not re.fullmatch(r"[A-Za-z0-9-]{1,16}", region):
        problems.append(f"region must be 1-16 letters, digits or '-', got {region!r}")
    values["region"] = region

    thresholds_raw = str(get("attenuation_thresholds_db", "60,62,68"))
    weights_raw = str(get("bucket_weights", "1.0,0.5,0.25,0.0"))
    risk_kwargs = {}
    try:
        thresholds = tuple(int(x) for x in thresholds_raw.split(","))
        if len(thresholds) != 3 or list(thresholds) != sorted(thresholds) or thresholds[0] < 0:
            raise ValueError
        risk_kwargs["attenuation_thresholds_db"] = thresholds
    except ValueError:
        problems.append(
            f"attenuation_thresholds_db must be three increasing dB values, got {thresholds_raw!r}")
    try:
        weights = tuple(float(x) for x in weights_raw.split(","))
        if len(weights) != 4 or not all(0.0 <= w <= 2.5 for w in weights):
            raise ValueError
        risk_kwargs["bucket_weights"] = weights
    except ValueError:
        problems.append(f"bucket_weights must be four weights in 0..2.5, got {weights_raw!r}")
    try:
        threshold_min = float(get("exposure_threshold_min", 11.0))
        if not 0.0 < threshold_min <= 24 * 60:
            raise ValueError
        risk_kwargs["exposure_threshold_min"] = threshold_min
    except ValueError:
        problems.append("exposure_threshold_min must be a number of minutes in (0, 1440]")
    tolerance = _parse_int(problems, "interval_tolerance", get("interval_tolerance", 12), 0, 144)
    if tolerance is not None:
        risk_kwargs["interval_tolerance"] = tolerance

    if problems:
        raise SettingsError(problems)
    return Settings(port=port, risk=RiskSettings(**risk_kwargs), **values)


def _write_secret(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def resolve_secrets(settings: Settings, announce=True) -> Settings:
    """Fill in secrets the operator did not supply, generating them into the data directory.

    A generated key is reused on the next start (it must be: the seeds are encrypted with it).
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    generated = []
    master_key = settings.master_key
    master_key_file = settings.master_key_file
    if master_key is None:
        master_key_file = settings.data_dir / "master.key"
        if not master_key_file.exists():
            _write_secret(master_key_file, base64.b64encode(os.urandom(MASTER_KEY_BYTES)) + b"\n")
            generated.append(f"master key {master_key_file}")
        problems: list[str] = []
        master_key = _parse_master_key(problems, f"master key file {master_key_file}",
                                       master_key_file.read_text())
        if problems:
            raise SettingsError(problems)
    export_key_file = settings.export_key_file
    if export_key_file is None:
        export_key_file = settings.data_dir / "export-signing-key.pem"
        if not export_key_file.exists():
            private = ec.generate_private_key(ec.SECP256R1())
            _write_secret(export_key_file, private.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption()))
            generated.append(f"export signing key {export_key_file}")
    if generated and announce:
        print("matching-service: generated " + " and ".join(generated)
              + " (development only: supply your own in production, see docs/operator-guide.md)",
              file=sys.stderr)
    return dataclasses.replace(settings, master_key=master_key, master_key_file=master_key_file,
                               export_key_file=export_key_file,
                               generated_secrets=tuple(generated))
