"""Strict input at the ingest API (issue 10, findings 2, 8 and 11): a CSV with broken quotes, an
Idempotency-Key reused with another body, JSON with the wrong Content-Type or JSON types the contract does
not allow. Each is a clear 4xx that names a line or a field, never a value, and publishes nothing."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from faststream.kafka import TestKafkaBroker

from cld_ingest.service import IngestSettings, create_app
from cld_schemas import topics
from cld_schemas.spec import load_spec
from tests.component.test_ingest_service import Api
from tests.support.capture import capture
from tests.support.records import service_record
from tests.support.tenancy import DEFAULT_SOURCE, make_tenancy

SPEC = load_spec()
SECRET = "Zqvoranth"  # a synthetic first name that must never come back in an error body


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    tenancy = make_tenancy()
    app = create_app(
        IngestSettings(kafka_bootstrap_servers="127.0.0.1:1", log_level="WARNING", publish_window=2),
        tenants=tenancy.registry,
    )
    raw = capture(app.state.broker, topics.RAW)
    async with TestKafkaBroker(app.state.broker):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://ingest", headers=tenancy.auth(DEFAULT_SOURCE)
        ) as client:
            yield Api(client, raw, app, tenancy)


def assert_clean_refusal(r: httpx.Response, status: int, api: Api) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    assert r.json()["detail"]
    assert SECRET not in r.text
    assert "9990000018" not in r.text
    assert api.raw.bodies == []


# ---- finding 2: CSV uploads are parsed strictly ----


def six_people() -> str:
    """An LA file of 6 people with no quoted cell, one physical line per row."""
    headers = [f.header for f in SPEC.fields]
    names = [f.name for f in SPEC.fields]
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\r\n")
    w.writerow(headers)
    for i, first in enumerate(["Ann", SECRET, "Cat", "Dan", "Eve", "Fay"]):
        rec = service_record(first_name=first, la_person_unique_identifier=f"P{i}", ethnicity="Other")
        w.writerow([rec.get(n) or "" for n in names])
    text = out.getvalue()
    assert '"' not in text
    return text


async def upload(api: Api, text: str, *, multipart: bool = False) -> httpx.Response:
    if multipart:
        return await api.client.post("/v1/uploads?la=318", files={"file": ("la.csv", text.encode(), "text/csv")})
    return await api.client.post("/v1/uploads?la=318", content=text.encode(), headers={"content-type": "text/csv"})


@pytest.mark.parametrize("multipart", [False, True], ids=["text-csv", "multipart"])
async def test_an_unterminated_quote_in_row_2_is_422_at_line_3_and_publishes_nothing(api: Api, multipart: bool) -> None:
    broken = six_people().replace(f",{SECRET},", f',"{SECRET},', 1)
    r = await upload(api, broken, multipart=multipart)
    assert_clean_refusal(r, 422, api)
    assert r.json()["detail"].startswith("line 3: a double quote opened on this line is not closed")

    good = await upload(api, six_people(), multipart=multipart)  # the corrected file: every person arrives
    assert good.status_code == 202, good.text
    assert good.json()["rows"] == 6
    assert [b["la_person_unique_identifier"] for b in api.raw.bodies] == [f"P{i}" for i in range(6)]


@pytest.mark.parametrize(
    ("broken", "says"),
    [
        (lambda t: t.replace(",Eve,", ',"Eve\nlater",', 1), "line 6: a quoted cell runs over a line break"),
        (lambda t: t.replace(",Cat,", ',"Cat,', 1).replace(",Fay,", ',Fay",', 1), "line 4: a quoted cell runs over"),
        (lambda t: t.replace(",Dan,", ',"Da"n,', 1), "line 5: text follows a closing double quote"),
        (lambda t: t.replace(",Fay,", ',"Fay,', 1), "line 7: a double quote opened on this line is not closed"),
    ],
    ids=["cell-with-line-break", "quote-closed-rows-later", "text-after-quote", "open-in-last-row"],
)
async def test_a_broken_quote_anywhere_is_422_naming_its_line(api: Api, broken: Any, says: str) -> None:
    r = await upload(api, broken(six_people()))
    assert_clean_refusal(r, 422, api)
    assert r.json()["detail"].startswith(says)
    assert "Eve" not in r.text
    assert "Fay" not in r.text


# ---- finding 11: JSON type rules (numbers only in numeric fields) ----


@pytest.mark.parametrize(
    ("field", "value"),
    [("first_name", 12345), ("last_name", 1.5), ("date_of_birth", 19500615), ("nhs_number", 9990000018)],
)
async def test_a_number_in_a_text_field_is_422_naming_the_field_never_the_value(
    api: Api, field: str, value: Any
) -> None:
    r = await api.client.post("/v1/records", json=service_record(**{field: value}))
    assert_clean_refusal(r, 422, api)
    [error] = r.json()["detail"]
    assert error["loc"] == ["body", field]
    assert error["type"] == "cld_json_type"
    assert str(value) not in r.text


async def test_numbers_in_numeric_fields_are_accepted_and_published_as_text(api: Api) -> None:
    r = await api.client.post(
        "/v1/records", json=service_record(unit_cost=20.5, planned_units_per_week=10, no_of_adults_being_cared_for=1)
    )
    assert r.status_code == 202, r.text
    [body] = api.raw.bodies
    assert (body["unit_cost"], body["planned_units_per_week"], body["no_of_adults_being_cared_for"]) == (
        "20.5",
        "10",
        "1",
    )


async def test_a_batch_with_one_wrongly_typed_record_is_refused_whole(api: Api) -> None:
    batch = [service_record(), service_record(event_start_date=20250501)]
    r = await api.client.post("/v1/records/batch", json=batch)
    assert_clean_refusal(r, 422, api)
    assert r.json()["detail"][0]["loc"] == ["body", 1, "event_start_date"]


# ---- finding 11: JSON with a wrong Content-Type is 415 ----


@pytest.mark.parametrize("path", ["/v1/records", "/v1/records/batch"])
@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "text/csv", "application/xml", None]
)
async def test_json_with_a_wrong_or_missing_content_type_is_415(api: Api, path: str, content_type: str | None) -> None:
    body = json.dumps(service_record() if path == "/v1/records" else [service_record()]).encode()
    request = api.client.build_request("POST", path, content=body)
    if content_type is not None:  # httpx sets no Content-Type for raw content
        request.headers["content-type"] = content_type
    assert ("content-type" in request.headers) is (content_type is not None)
    r = await api.client.send(request)
    assert_clean_refusal(r, 415, api)
    assert "application/json" in r.json()["detail"]


@pytest.mark.parametrize("content_type", ["application/json", "application/json; charset=utf-8", "Application/JSON"])
async def test_json_content_types_are_accepted(api: Api, content_type: str) -> None:
    r = await api.client.post(
        "/v1/records", content=json.dumps(service_record()).encode(), headers={"content-type": content_type}
    )
    assert r.status_code == 202, r.text
    assert len(api.raw.bodies) == 1


async def test_an_unauthenticated_request_is_401_before_its_content_type_is_judged(api: Api) -> None:
    r = await api.client.post(
        "/v1/records", content=b"x", headers={"content-type": "text/plain", "authorization": "Bearer nope"}
    )
    assert r.status_code == 401
    assert api.raw.bodies == []


# ---- finding 8: an Idempotency-Key reused with a different body is 409 ----


@pytest.mark.parametrize("header", ["Idempotency-Key", "X-CLD-Event-Id"])
async def test_a_key_reused_with_a_different_body_is_409_and_the_same_body_stays_202(api: Api, header: str) -> None:
    first = await api.client.post("/v1/records", json=service_record(), headers={header: "k-1"})
    same = await api.client.post("/v1/records", json=service_record(), headers={header: "k-1"})
    other = await api.client.post("/v1/records", json=service_record(first_name=SECRET), headers={header: "k-1"})

    assert (first.status_code, same.status_code) == (202, 202)
    assert other.status_code == 409, other.text
    assert "different body" in other.json()["detail"]
    assert SECRET not in other.text
    assert [h["cld-event-id"] for h in api.raw.headers] == ["k-1", "k-1"]  # the conflicting body: not published
    assert all(b["first_name"] == "Test" for b in api.raw.bodies)

    fresh = await api.client.post("/v1/records", json=service_record(first_name=SECRET), headers={header: "k-2"})
    assert fresh.status_code == 202  # a new key for the corrected record


async def test_the_same_body_in_another_key_order_or_padding_is_the_same_body(api: Api) -> None:
    rec = service_record()
    reordered = dict(reversed(list(rec.items())))
    padded = {**rec, "first_name": "  Test  "}
    for body in (rec, reordered, padded):
        r = await api.client.post("/v1/records", json=body, headers={"Idempotency-Key": "k-order"})
        assert r.status_code == 202, r.text


@pytest.mark.parametrize(
    "change",
    [
        {"json": [service_record(), service_record(event_reference="EV2")]},
        {"json": [service_record()], "headers": {"cld-opt-out": "objection"}},
        {"json": [service_record(la_code=None)], "headers": {"X-CLD-LA": "102"}},
    ],
    ids=["another-record", "other-opt-outs", "another-la"],
)
async def test_a_batch_key_reused_with_a_different_batch_is_409(api: Api, change: dict[str, Any]) -> None:
    first = await api.client.post("/v1/records/batch", json=[service_record()], headers={"Idempotency-Key": "b-1"})
    assert first.status_code == 202
    headers = {"Idempotency-Key": "b-1", **change.get("headers", {})}
    again = await api.client.post("/v1/records/batch", json=change["json"], headers=headers)
    assert again.status_code == 409, again.text
    assert len(api.raw.bodies) == 1


async def test_keys_are_per_source_and_per_endpoint(api: Api) -> None:
    one = await api.client.post("/v1/records", json=service_record(), headers={"Idempotency-Key": "shared"})
    other_source = await api.client.post(
        "/v1/records",
        json=service_record(la_code="319", first_name="Other"),
        headers={"Idempotency-Key": "shared", **api.tenancy.auth("care-provider")},
    )
    batch = await api.client.post(
        "/v1/records/batch", json=[service_record(first_name="Other")], headers={"Idempotency-Key": "shared"}
    )
    assert (one.status_code, other_source.status_code, batch.status_code) == (202, 202, 202)


async def test_the_openapi_documents_409_415_and_422_for_the_json_endpoints(api: Api) -> None:
    paths = (await api.client.get("/openapi.json")).json()["paths"]
    for path in ("/v1/records", "/v1/records/batch"):
        assert {"202", "409", "415", "422"} <= set(paths[path]["post"]["responses"]), path
    assert {"202", "415", "422"} <= set(paths["/v1/uploads"]["post"]["responses"])
    assert "409" not in paths["/v1/uploads"]["post"]["responses"]  # uploads have no client key
