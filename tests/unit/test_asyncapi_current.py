"""docs/asyncapi.yaml must be what the code generates: regenerate with `make asyncapi` when this fails."""

from __future__ import annotations

from pathlib import Path

from cld_cli.asyncapi_doc import asyncapi_yaml

DOC = Path(__file__).resolve().parents[2] / "docs" / "asyncapi.yaml"


def test_asyncapi_document_is_current() -> None:
    generated = asyncapi_yaml()
    assert DOC.read_text(encoding="utf-8") == generated, "docs/asyncapi.yaml is stale: run `make asyncapi`"


def test_asyncapi_document_names_every_contract_topic() -> None:
    text = DOC.read_text(encoding="utf-8")
    for topic in (
        "cld.events.raw.v1",
        "cld.records.validated.v1",
        "cld.records.pseudonymised.v1",
        "cld.submissions.v1",
        "cld.deadletter.v1",
    ):
        assert f"address: {topic}" in text
