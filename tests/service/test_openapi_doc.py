"""docs/openapi.json is the app's own OpenAPI document, kept up to date."""
from __future__ import annotations

import json
from pathlib import Path

from matching_service.cli import openapi_document

DOC = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"


def test_openapi_document_in_docs_is_up_to_date():
    current = openapi_document()
    assert json.loads(DOC.read_text()) == current, (
        "docs/openapi.json is stale: run `matching-service openapi --out docs/openapi.json`")
    assert {"/v1/uploads", "/v1/cases", "/v1/codes", "/v1/tokens/{serial}/status",
            "/v1/cases/{case_id}/report", "/v1/exports/latest.zip"} <= set(current["paths"])


def test_served_openapi_matches(service):
    with service.http() as http:
        served = http.get("/openapi.json").json()
    assert served["paths"].keys() == openapi_document()["paths"].keys()
