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


def test_every_message_shows_its_topic_s_payload_headers_and_key() -> None:
    """Subscribers and publishers alike (FastStream alone wrote ``EmptyPayload`` for the subscribers and no
    headers or key): the contract's payload, header names and the key binding (issue 11 item 3)."""
    import yaml

    from cld_schemas.topics import MESSAGES

    doc = yaml.safe_load(DOC.read_text(encoding="utf-8"))
    schemas, messages = doc["components"]["schemas"], doc["components"]["messages"]
    assert "EmptyPayload" not in schemas
    seen: set[str] = set()
    for channel in doc["channels"].values():
        contract = MESSAGES[channel["address"]]
        for ref in channel["messages"].values():
            message = messages[ref["$ref"].rsplit("/", 1)[-1]]
            assert message["payload"] == {"$ref": f"#/components/schemas/{contract.payload}"}
            assert contract.payload in schemas
            headers = schemas[message["headers"]["$ref"].rsplit("/", 1)[-1]]
            names = {f.alias for f in contract.headers.model_fields.values()}
            assert set(headers["properties"]) == names
            assert all(name.startswith("cld-") for name in names)
            key = message["bindings"]["kafka"]["key"]
            assert key["type"] == "string"
            assert key.get("pattern") == contract.key_pattern
            seen.add(channel["address"])
    assert seen == set(MESSAGES)
    raw_headers = schemas["RawRecordHeaders"]["properties"]
    assert {"cld-source", "cld-event-id", "cld-action", "cld-opt-out", "cld-release"} <= set(raw_headers)
