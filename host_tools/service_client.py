"""HTTP client for the national matching service (what the clinic side of tokentool uses).

A pure library over httpx: register provisioning records, upload encounter batches, read a
token's exposure status, redeem a one-time code with diagnosis keys and the case's log, and
(for officials and tests) issue codes and read case reports. Formats: docs/service-api.md.

Retries: idempotent calls (register, upload, reads) retry connection failures, 5xx and 429
with exponential backoff (honouring Retry-After). Redeeming a code is not idempotent (the code
is consumed), so it is tried once per connection, and a "code already used" after a lost
response is reported as such.

Where the service and key come from (first found wins): explicit arguments; the environment
(TOKENTOOL_SERVICE_URL, TOKENTOOL_SERVICE_KEY); the config file named by TOKENTOOL_CONFIG or
~/.config/tokentool/service.json ({"url": ..., "key": ...}).
"""
from __future__ import annotations

import base64
import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import httpx

from host_tools.errors import TokenToolError

DEFAULT_CONFIG_PATH = Path("~/.config/tokentool/service.json")
DEFAULT_BATCH_RECORDS = 5000
# Case reports over a national registry take tens of seconds (docs/operator-guide.md, Sizing).
REPORT_TIMEOUT_S = 300.0


class ServiceError(TokenToolError):
    """The matching service refused a request or could not be reached."""

    def __init__(self, message: str, status: int | None = None, code: str | None = None,
                 body: dict | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.body = body or {}


class ServiceUnreachable(ServiceError):
    """No answer (network down, service stopped): the outbox keeps the data for later."""

    exit_code = 4


class ConfigError(TokenToolError):
    exit_code = 2


@dataclasses.dataclass(frozen=True)
class ServiceConfig:
    url: str
    key: str

    @classmethod
    def load(cls, url: str | None = None, key: str | None = None,
             env: Mapping[str, str] | None = None, path: str | Path | None = None
             ) -> "ServiceConfig":
        env = os.environ if env is None else env
        file_values: dict = {}
        config_path = Path(path or env.get("TOKENTOOL_CONFIG") or DEFAULT_CONFIG_PATH).expanduser()
        if config_path.exists():
            try:
                file_values = json.loads(config_path.read_text())
                if not isinstance(file_values, dict):
                    raise ValueError
            except (OSError, ValueError) as error:
                raise ConfigError(f"the service config file {config_path} is not a JSON object "
                                  'like {"url": ..., "key": ...}') from error
        url = url or env.get("TOKENTOOL_SERVICE_URL") or file_values.get("url")
        key = key or env.get("TOKENTOOL_SERVICE_KEY") or file_values.get("key")
        if not url:
            raise ConfigError("no matching-service URL: pass --service URL, set "
                              f"TOKENTOOL_SERVICE_URL or write it to {config_path}")
        if not str(url).startswith(("http://", "https://")):
            raise ConfigError(f"the matching-service URL must start with http:// or https://, got {url!r}")
        if not key:
            raise ConfigError("no API key for the matching service: set TOKENTOOL_SERVICE_KEY or "
                              f"write it to {config_path}")
        return cls(url=str(url).rstrip("/"), key=str(key))


def b64(data: bytes) -> str:
    return base64.b64encode(bytes(data)).decode("ascii")


def provisioning_record(serial: str, role: str, identity: str, seed: bytes | None = None,
                        auth_key: bytes | None = None, tx_power_dbm: int | None = None,
                        board: str = "", venue_name: str | None = None,
                        venue_place: str | None = None, holder_ref: str | None = None) -> dict:
    """One registration entry in the service's format (binary fields base64)."""
    record: dict[str, Any] = {"serial": serial, "role": role, "identity": identity,
                              "board": board}
    if seed is not None:
        record["seed"] = b64(seed)
    if auth_key is not None:
        record["auth_key"] = b64(auth_key)
    for name, value in (("tx_power_dbm", tx_power_dbm), ("venue_name", venue_name),
                        ("venue_place", venue_place), ("holder_ref", holder_ref)):
        if value is not None:
            record[name] = value
    return record


def upload_batches(serial: str, records: Iterable[tuple[int, bytes]], syncs: list[dict],
                   batch_records: int = DEFAULT_BATCH_RECORDS) -> list[dict]:
    """Split a token's records into upload bodies of at most `batch_records`, each carrying the
    sync sessions that cover its records (the service needs them to correct times)."""
    ordered = sorted(records, key=lambda r: r[0])
    batches = []
    for start in range(0, len(ordered), batch_records):
        chunk = ordered[start:start + batch_records]
        low, high = chunk[0][0], chunk[-1][0]
        covering = [s for s in syncs if s["first_seq"] <= high and s["last_seq"] >= low]
        batches.append({"token": serial,
                        "records": [{"seq": seq, "data": b64(data)} for seq, data in chunk],
                        "syncs": covering})
    if not batches and syncs:
        batches.append({"token": serial, "records": [], "syncs": list(syncs)})
    return batches


def wait_until_serving(url: str, process, timeout_s: float = 60.0, poll_s: float = 0.2) -> bool:
    """Wait for a matching service just started as `process` (a Popen) to answer its health
    check at `url`; False when it exited or `timeout_s` passed first."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if httpx.get(url + "/v1/health", timeout=1).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            return False
        time.sleep(poll_s)


class ServiceClient:
    """One matching service, one API key."""

    def __init__(self, url: str, key: str, timeout_s: float = 30.0, retries: int = 4,
                 backoff_s: float = 0.5, sleep: Callable[[float], None] | None = None,
                 transport: httpx.BaseTransport | None = None):
        self.url = url.rstrip("/")
        self.retries = retries
        self.backoff_s = backoff_s
        self._sleep = sleep or time.sleep
        self._http = httpx.Client(base_url=self.url, timeout=timeout_s, transport=transport,
                                  headers={"Authorization": f"Bearer {key}",
                                           "User-Agent": "tokentool"})

    @classmethod
    def from_config(cls, config: ServiceConfig, **kwargs) -> "ServiceClient":
        return cls(config.url, config.key, **kwargs)

    def close(self) -> None:
        self._http.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- plumbing ------------------------------------------------------------------------------

    def _request(self, method: str, path: str, what: str, idempotent: bool = True,
                 json_body: Any = None, raw: bool = False, timeout_s: float | None = None):
        attempts = self.retries + 1 if idempotent else 1
        delay = self.backoff_s
        last_error: Exception | None = None
        for attempt in range(attempts):
            try:
                response = self._http.request(
                    method, path, json=json_body,
                    timeout=timeout_s if timeout_s is not None else httpx.USE_CLIENT_DEFAULT)
            except httpx.HTTPError as error:
                last_error = error
                if attempt + 1 < attempts:
                    self._sleep(delay)
                    delay *= 2
                    continue
                raise ServiceUnreachable(
                    f"the matching service at {self.url} did not answer ({type(error).__name__}) "
                    f"while trying to {what}") from error
            if response.status_code in (429, 502, 503, 504) or response.status_code >= 500:
                if attempt + 1 < attempts:
                    retry_after = response.headers.get("Retry-After", "")
                    wait = float(retry_after) if retry_after.isdigit() else delay
                    self._sleep(min(wait, 60.0))
                    delay *= 2
                    continue
            if response.status_code >= 400:
                raise self._refusal(response, what)
            if raw:
                return response
            try:
                return response.json()
            except ValueError as error:
                raise ServiceError(f"the matching service sent a reply that is not JSON while "
                                   f"trying to {what}", response.status_code) from error
        raise ServiceUnreachable(f"the matching service did not answer while trying to {what}") \
            from last_error

    def _refusal(self, response: httpx.Response, what: str) -> ServiceError:
        try:
            body = response.json()
            reason = body.get("error") or response.reason_phrase
        except ValueError:
            body, reason = {}, response.reason_phrase
        cls = ServiceUnreachable if response.status_code >= 500 else ServiceError
        return cls(f"the matching service refused to {what}: {reason}", response.status_code,
                   body.get("code") if isinstance(body, dict) else None,
                   body if isinstance(body, dict) else None)

    # -- clinic --------------------------------------------------------------------------------

    def health(self) -> dict:
        return self._request("GET", "/v1/health", "report its health")

    def register(self, records: list[dict]) -> dict:
        """Register provisioning records (see provisioning_record())."""
        return self._request("POST", "/v1/registry", f"register {len(records)} tokens",
                             json_body={"tokens": records})

    def upload(self, batch: dict) -> dict:
        """Upload one batch {"token", "records", "syncs"}; safe to repeat (idempotent)."""
        return self._request("POST", "/v1/uploads", f"store the upload of {batch.get('token')}",
                             json_body=batch)

    def status(self, serial: str) -> dict:
        return self._request("GET", f"/v1/tokens/{serial}/status",
                             f"give the exposure status of {serial}")

    def auth_key(self, serial: str) -> bytes:
        reply = self._request("GET", f"/v1/registry/{serial}/auth-key",
                              f"give the auth key of {serial}")
        return base64.b64decode(reply["auth_key"])

    def report_positive(self, code: str, keys: list[dict], log: dict) -> dict:
        """Redeem a one-time code with the token's diagnosis keys and full log.

        keys: [{"key": bytes or base64, "rolling_start_interval": n, "rolling_period": n}].
        log: an upload body for the same token (all its records and syncs)."""
        body = {"code": code, "log": log, "keys": [
            {**k, "key": b64(k["key"]) if isinstance(k["key"], (bytes, bytearray)) else k["key"]}
            for k in keys]}
        try:
            # The service matches the case before answering: at national scale that takes a
            # while, and a lost answer to this one-shot request is the thing to avoid.
            return self._request("POST", "/v1/cases", f"accept the positive report of "
                                 f"{log.get('token')}", idempotent=False, json_body=body,
                                 timeout_s=REPORT_TIMEOUT_S)
        except ServiceError as error:
            if error.status == 409 and error.code == "conflict" and "used" in str(error):
                raise ServiceError("the verification code has already been used (if an earlier "
                                   "attempt lost its answer, the report may already be in)",
                                   409, "conflict", error.body) from error
            raise

    # -- health official -----------------------------------------------------------------------

    def issue_code(self, serial: str, report_type: int = 1, onset_at: int | None = None) -> dict:
        body: dict[str, Any] = {"token": serial, "report_type": report_type}
        if onset_at is not None:
            body["onset_at"] = onset_at
        return self._request("POST", "/v1/codes", f"issue a code for {serial}",
                             idempotent=False, json_body=body)

    def cases(self) -> list[dict]:
        return self._request("GET", "/v1/cases", "list cases")["cases"]

    def case_report(self, case_id: int) -> dict:
        return self._request("GET", f"/v1/cases/{case_id}/report",
                             f"produce the report of case {case_id}", timeout_s=REPORT_TIMEOUT_S)

    def exposed(self) -> list[dict]:
        return self._request("GET", "/v1/exposed", "list exposed wearers")["exposed"]

    def export_zip(self) -> bytes:
        return self._request("GET", "/v1/exports/latest.zip", "give its key export",
                             raw=True).content
