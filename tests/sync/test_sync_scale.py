"""A full sync of a token holding 20,000 records, and a batch of tokens synced in parallel."""
from __future__ import annotations

import json

from tokenfw import records

from host_tools.outbox import Outbox
from synchelpers import clinic_identity, run_tokentool, tokentool_json


def test_full_sync_of_twenty_thousand_records(virtual_token, tokentool_home):
    token = virtual_token()
    clinic_identity(token, tokentool_home)
    token.fill(20_000)
    assert tokentool_json("info", "--port", token.pty)["pending"] == 20_000
    result = tokentool_json("sync", "--port", token.pty)
    assert result["new_records"] == 20_000 and result["acked_seq"] == 20_000 and result["pending_on_token"] == 0
    with Outbox(tokentool_home / "outbox.sqlite") as outbox:
        seqs = []
        for _, seq, data, _, _ in outbox.records_of("TT-00C0FFEE"):
            records.decode(seq, data)
            seqs.append(seq)
    assert seqs == list(range(1, 20_001))


def test_batch_sync_of_several_tokens_prints_a_table_and_fails_only_the_bad_port(virtual_token, tokentool_home, tmp_path):
    first, second = virtual_token("batch-1"), virtual_token("batch-2")
    clinic_identity(first, tokentool_home, serial="TT-0000000A")
    clinic_identity(second, tokentool_home, serial="TT-0000000B")
    first.fill(50)
    second.fill(70)
    missing = str(tmp_path / "ttyUSB9")
    code, out, err = run_tokentool("sync", "--port", first.pty, "--port", f"{second.pty},{missing}", "--json")
    assert code == 1  # one port failed
    results = {r["port"]: r for r in json.loads(out)["results"]}
    assert results[first.pty]["new_records"] == 50 and results[second.pty]["new_records"] == 70
    assert not results[missing]["ok"] and missing in results[missing]["error"]
    code, out, _ = run_tokentool("info", "--port", first.pty, "--port", second.pty)
    assert code == 0 and "TT-0000000A" in out and "TT-0000000B" in out and "2 of 2 tokens ok" in out
