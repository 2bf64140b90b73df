"""Real servers for the service tests: `matching-service serve` (uvicorn) in a subprocess on a
loopback port, over SQLite and over a real PostgreSQL 16 started here with pgserver.

Every API test runs against both databases (the `service` fixture is parametrized); PostgreSQL is
never skipped: if pgserver cannot start it, those tests fail.
"""
from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
import pytest

from host_tools.service_client import ServiceClient, wait_until_serving

REPO = Path(__file__).resolve().parents[2]
SERVICE_CMD = [sys.executable, "-m", "matching_service.cli"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def postgres_root_url():
    import pgserver  # a missing pgserver is an error, not a skip

    # Not under pytest's tmp dir: as root, pgserver runs PostgreSQL as an unprivileged user,
    # which cannot traverse pytest's 0700 directories.
    pgdata = tempfile.mkdtemp(prefix="ms-pgdata-")
    server = pgserver.get_server(pgdata, cleanup_mode="stop")
    yield server.get_uri()
    server.cleanup()
    shutil.rmtree(pgdata, ignore_errors=True)


def new_postgres_database(root_url: str) -> str:
    import psycopg2

    name = "ms_" + secrets.token_hex(4)
    connection = psycopg2.connect(root_url)
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE {name}")
    connection.close()
    head, _, query = root_url.partition("?")
    base = head.rsplit("/", 1)[0]
    return f"{base}/{name}" + (f"?{query}" if query else "")


def service_env(data_dir: Path, db_url: str, **extra) -> dict:
    env = dict(os.environ)
    env.update({
        "MATCHING_DATA_DIR": str(data_dir),
        "MATCHING_DB_URL": db_url,
        "MATCHING_MASTER_KEY": base64.b64encode(b"\x42" * 32).decode(),
        "MATCHING_RATE_LIMIT_CLINIC_PER_MIN": "100000",
        "MATCHING_RATE_LIMIT_OFFICIAL_PER_MIN": "100000",
        "MATCHING_RATE_LIMIT_ADMIN_PER_MIN": "100000",
        "MATCHING_MAX_BODY_BYTES": str(1024 * 1024),
        "MATCHING_MAX_RECORDS_PER_UPLOAD": "2000",
    })
    env.update({k: str(v) for k, v in extra.items()})
    return env


def run_cli(env: dict, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([*SERVICE_CMD, *args], env=env, capture_output=True, text=True,
                            timeout=120, cwd=REPO)
    if check and result.returncode != 0:
        raise AssertionError(f"matching-service {' '.join(args)} failed: {result.stderr}")
    return result


class RunningService:
    """A live `matching-service serve` process and helpers to talk to it."""

    def __init__(self, backend: str, db_url: str, data_dir: Path, env: dict):
        self.backend = backend
        self.db_url = db_url
        self.data_dir = data_dir
        self.env = env
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.admin_key = json.loads(run_cli(env, "create-key", "--role", "admin", "--json").stdout)["key"]
        self.log_path = data_dir / "serve.log"
        self._log = open(self.log_path, "w")
        self.process = subprocess.Popen([*SERVICE_CMD, "serve", "--port", str(self.port),
                                         "--log-level", "warning"],
                                        env=env, stdout=self._log, stderr=subprocess.STDOUT, cwd=REPO)
        if not wait_until_serving(self.url, self.process, poll_s=0.1):
            raise RuntimeError(f"matching-service did not start: {self.log_path.read_text()}")

    def new_key(self, role: str, **extra) -> str:
        reply = httpx.post(self.url + "/v1/keys", json={"role": role, "label": "test", **extra},
                           headers={"Authorization": f"Bearer {self.admin_key}"}, timeout=30)
        assert reply.status_code == 201, reply.text
        return reply.json()["key"]

    def client(self, role: str, **extra) -> ServiceClient:
        return ServiceClient(self.url, self.new_key(role, **extra), retries=0)

    def http(self, key: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def service(request, tmp_path_factory):
    data_dir = tmp_path_factory.mktemp(f"service-{request.param}")
    if request.param == "sqlite":
        db_url = f"sqlite:///{data_dir / 'matching.sqlite3'}"
    else:
        db_url = new_postgres_database(request.getfixturevalue("postgres_root_url"))
    running = RunningService(request.param, db_url, data_dir, service_env(data_dir, db_url))
    yield running
    running.stop()


@pytest.fixture
def clinic(service):
    with service.client("clinic") as client:
        yield client


@pytest.fixture
def official(service):
    with service.client("official") as client:
        yield client
