"""Fixtures for the sync tests (helpers in synchelpers.py)."""
from __future__ import annotations

import pytest

from synchelpers import VirtualToken


@pytest.fixture
def tokentool_home(tmp_path, monkeypatch):
    home = tmp_path / "clinic"
    monkeypatch.setenv("TOKENTOOL_HOME", str(home))
    monkeypatch.delenv("TOKENTOOL_OUTBOX", raising=False)
    monkeypatch.delenv("TOKENTOOL_KEYSTORE", raising=False)
    return home


@pytest.fixture
def virtual_token(tmp_path):
    made: list[VirtualToken] = []

    def make(name: str = "sync-1", clock: str = "set") -> VirtualToken:
        token = VirtualToken(tmp_path / name, name, clock)
        made.append(token)
        return token

    yield make
    for token in made:
        token.stop()


