"""The ingest API alone: FastAPI through httpx's ASGI transport, FastStream's in-memory broker behind it."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from faststream.kafka import TestKafkaBroker

from cld_ingest.service import IngestSettings, create_app
from cld_schemas import topics
from cld_schemas.spec import load_spec
from tests.support.capture import Captured, capture
from tests.support.records import service_record
from tests.support.tenancy import DEFAULT_SOURCE, Tenancy, make_tenancy


@dataclass
class Api:
    client: httpx.AsyncClient
    raw: Captured
    app: FastAPI
    tenancy: Tenancy

    def metric(self, name: str, labels: dict[str, str]) -> float:
        return float(self.app.state.registry.get_sample_value(name, labels) or 0.0)


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    """The ingest app with a registry built in code; the client authenticates as the default (hub) source."""
    tenancy = make_tenancy()
    app = create_app(
        IngestSettings(
            kafka_bootstrap_servers="127.0.0.1:1", log_level="WARNING", max_batch_records=5, max_body_bytes=64 * 1024
        ),
        tenants=tenancy.registry,
    )
    raw = capture(app.state.broker, topics.RAW)
    async with TestKafkaBroker(app.state.broker):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://ingest", headers=tenancy.auth(DEFAULT_SOURCE)
        ) as client:
            yield Api(client, raw, app, tenancy)


def csv_text(rows: list[dict[str, Any]]) -> str:
    spec = load_spec()
    headers = [f.header for f in spec.fields]
    names = [f.name for f in spec.fields]
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(headers)
    for r in rows:
        w.writerow([r.get(n) or "" for n in names])
    return out.getvalue()


async def test_one_record_is_published_keyed_by_la_with_provenance(api: Api) -> None:
    r = await api.client.post(
        "/v1/records", json=service_record(), headers={"X-CLD-Source": "case-system", "Idempotency-Key": "abc-1"}
    )

    assert r.status_code == 202, r.text
    assert r.json()["event_id"] == "abc-1"
    assert api.raw.keys == [b"318"]
    assert api.raw.bodies[0]["nhs_number"] == "9990000018"
    assert api.raw.bodies[0]["event_start_date"] == "2025-05-01"  # as sent: the contract allows ISO dates
    h = api.raw.headers[0]
    assert h["cld-source"] == DEFAULT_SOURCE  # the authenticated source, not the client's X-CLD-Source
    assert h["cld-event-id"] == "abc-1"
    assert "cld-received-at" in h
    assert api.metric("cld_records_received_total", {"la_code": "318", "channel": "http"}) == 1


async def test_without_an_idempotency_key_each_post_gets_a_new_event_id(api: Api) -> None:
    a = (await api.client.post("/v1/records", json=service_record())).json()["event_id"]
    b = (await api.client.post("/v1/records", json=service_record())).json()["event_id"]
    assert a != b


async def test_same_idempotency_key_is_the_same_event(api: Api) -> None:
    for _ in range(2):
        r = await api.client.post("/v1/records", json=service_record(), headers={"X-CLD-Event-Id": "same"})
        assert r.status_code == 202
    # Ingest is stateless: both are published with one event id, and downstream dedupes by it.
    assert [h["cld-event-id"] for h in api.raw.headers] == ["same", "same"]


async def test_la_code_from_header_when_absent_from_the_record(api: Api) -> None:
    r = await api.client.post("/v1/records", json=service_record(la_code=None), headers={"X-CLD-LA": "102"})
    assert r.status_code == 202
    assert api.raw.keys == [b"102"]
    assert api.raw.bodies[0]["la_code"] == "102"


async def test_conflicting_or_missing_la_code_is_422(api: Api) -> None:
    r1 = await api.client.post("/v1/records", json=service_record(), headers={"X-CLD-LA": "102"})
    r2 = await api.client.post("/v1/records", json=service_record(la_code=None))
    assert (r1.status_code, r2.status_code) == (422, 422)
    assert api.raw.bodies == []


async def test_unknown_field_is_422_naming_the_field_never_the_value(api: Api) -> None:
    r = await api.client.post("/v1/records", json=service_record(nhs_numbr="9990000026"))

    assert r.status_code == 422
    body = r.text
    assert "nhs_numbr" in body
    assert "9990000026" not in body
    assert api.raw.bodies == []


async def test_wrong_type_and_bad_json_are_clean_422_without_values(api: Api) -> None:
    r1 = await api.client.post("/v1/records", json=service_record(first_name=["Secretname"]))
    r2 = await api.client.post(
        "/v1/records", content=b'{"first_name": "Secretname"', headers={"content-type": "application/json"}
    )
    for r in (r1, r2):
        assert r.status_code == 422
        assert r.headers["content-type"].startswith("application/json")
        assert "Secretname" not in r.text


async def test_batch_is_all_or_nothing(api: Api) -> None:
    good = [service_record(event_reference=f"EV{i}") for i in range(3)]
    bad = [*good, service_record(la_code="1")]
    r_bad = await api.client.post("/v1/records/batch", json=bad)
    assert r_bad.status_code == 422
    assert api.raw.bodies == []

    r = await api.client.post("/v1/records/batch", json=good, headers={"Idempotency-Key": "b1"})
    assert r.status_code == 202
    assert r.json()["event_ids"] == ["b1:0", "b1:1", "b1:2"]
    assert len(api.raw.bodies) == 3


async def test_batch_over_the_limit_is_413(api: Api) -> None:
    r = await api.client.post("/v1/records/batch", json=[service_record()] * 6)
    assert r.status_code == 413
    big = await api.client.post("/v1/records", json=service_record(event_description="x" * 70_000))
    assert big.status_code == 413
    assert api.raw.bodies == []


async def test_csv_upload_publishes_every_row_and_is_idempotent(api: Api) -> None:
    text = csv_text([service_record(event_reference=f"EV{i}", event_start_date="01/05/2025") for i in range(4)])

    r1 = await api.client.post("/v1/uploads?la=318", content=text.encode(), headers={"content-type": "text/csv"})
    r2 = await api.client.post("/v1/uploads", params={"la": "318"}, files={"file": ("la.csv", text, "text/csv")})

    assert r1.status_code == 202, r1.text
    assert r2.status_code == 202, r2.text
    assert r1.json()["rows"] == 4
    assert r1.json()["upload_id"] != r2.json()["upload_id"]
    ids = [h["cld-event-id"] for h in api.raw.headers]
    assert len(ids) == 8
    assert ids[:4] == ids[4:]  # same file -> same event ids
    assert len(set(ids[:4])) == 4
    assert all(h["cld-channel"] == "csv" for h in api.raw.headers)
    assert api.metric("cld_records_received_total", {"la_code": "318", "channel": "csv"}) == 8


@pytest.mark.parametrize(
    ("content", "status"),
    [
        (b"", 422),
        (b"a;b;c\n1;2;3\n", 422),
        (b"\xff\xfe\x00garbage", 400),
    ],
)
async def test_bad_file_is_refused_with_a_reason(api: Api, content: bytes, status: int) -> None:
    r = await api.client.post("/v1/uploads?la=318", content=content, headers={"content-type": "text/csv"})
    assert r.status_code == status
    assert r.json()["detail"]
    assert api.raw.bodies == []


async def test_file_of_another_la_is_refused_before_anything_is_published(api: Api) -> None:
    text = csv_text([service_record(), service_record(la_code="102")])
    r = await api.client.post("/v1/uploads?la=318", content=text.encode(), headers={"content-type": "text/csv"})
    assert r.status_code == 422
    assert "row 2" in r.json()["detail"]
    assert api.raw.bodies == []


async def test_metrics_and_openapi_are_served(api: Api) -> None:
    m = await api.client.get("/metrics")
    assert m.status_code == 200
    assert "faststream_" in m.text or "cld_records_received_total" in m.text
    spec = (await api.client.get("/openapi.json")).json()
    assert {"/v1/records", "/v1/records/batch", "/v1/uploads"} <= set(spec["paths"])
    assert json.dumps(spec).count("nhs_number") >= 1
