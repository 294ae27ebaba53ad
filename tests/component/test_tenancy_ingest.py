"""Tenancy at the HTTP ingest: who may submit for which LA (issue 6, section 1), and opt-out flags passed on.

A source for LA A cannot create anything for LA B: every refusal is 401/403 with a clear reason and leaves
the raw topic untouched.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import pytest
from faststream.kafka import TestKafkaBroker

from cld_governance.tenancy import TenancyError, open_registry
from cld_ingest.service import IngestSettings, create_app
from cld_schemas import topics
from tests.component.test_ingest_service import Api, csv_text
from tests.support.capture import capture
from tests.support.records import service_record
from tests.support.tenancy import make_tenancy

SETTINGS = {"kafka_bootstrap_servers": "127.0.0.1:1", "log_level": "WARNING"}


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    """The ingest app with a registry; the client sends no key unless a test adds one."""
    tenancy = make_tenancy()
    app = create_app(IngestSettings(**SETTINGS), tenants=tenancy.registry)  # type: ignore[arg-type]
    raw = capture(app.state.broker, topics.RAW)
    async with TestKafkaBroker(app.state.broker):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://ingest") as client:
            yield Api(client, raw, app, tenancy)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer cldk_not-a-key-of-this-deployment"},
        {"X-API-Key": "cldk_not-a-key-of-this-deployment"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer " + "k" * 5000},
    ],
    ids=["no-key", "unknown-bearer", "unknown-x-api-key", "basic-scheme", "huge-key"],
)
async def test_no_or_unknown_key_is_401_and_nothing_is_published(api: Api, headers: dict[str, str]) -> None:
    single = await api.client.post("/v1/records", json=service_record(), headers=headers)
    batch = await api.client.post("/v1/records/batch", json=[service_record()], headers=headers)
    csv_up = await api.client.post(
        "/v1/uploads?la=318",
        content=csv_text([service_record()]).encode(),
        headers={**headers, "content-type": "text/csv"},
    )

    for r in (single, batch, csv_up):
        assert r.status_code == 401
        assert r.headers["www-authenticate"].startswith("Bearer")
        assert "key" in r.json()["detail"] or "not known" in r.json()["detail"]
        assert "cldk_" not in r.text  # the presented key is never echoed
    assert api.raw.bodies == []


async def test_an_unauthenticated_caller_is_refused_before_its_body_is_read(api: Api) -> None:
    r = await api.client.post("/v1/records", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 401  # not 422: an unknown caller learns nothing about what a valid body is


@pytest.mark.parametrize("header", ["Authorization", "X-API-Key"])
async def test_a_key_in_either_header_authenticates(api: Api, header: str) -> None:
    key = api.tenancy.keys["case-system"]
    value = f"Bearer {key}" if header == "Authorization" else key
    r = await api.client.post("/v1/records", json=service_record(), headers={header: value})
    assert r.status_code == 202, r.text
    assert api.raw.headers[0]["cld-source"] == "case-system"


async def test_a_source_for_la_a_cannot_submit_a_record_for_la_b(api: Api) -> None:
    auth = api.tenancy.auth("case-system")  # LA 318 only
    r = await api.client.post("/v1/records", json=service_record(la_code="319"), headers=auth)
    r_header = await api.client.post(
        "/v1/records", json=service_record(la_code=None), headers={**auth, "X-CLD-LA": "319"}
    )

    for resp in (r, r_header):
        assert resp.status_code == 403
        assert resp.json()["detail"] == "source 'case-system' may not submit for LA 319"
    assert api.raw.bodies == []


async def test_a_batch_with_one_record_of_another_la_is_refused_whole(api: Api) -> None:
    records = [service_record(event_reference=f"EV{i}") for i in range(3)] + [service_record(la_code="319")]
    r = await api.client.post("/v1/records/batch", json=records, headers=api.tenancy.auth("case-system"))

    assert r.status_code == 403
    assert r.json()["detail"] == "record 3: source 'case-system' may not submit for LA 319"
    assert api.raw.bodies == []


async def test_an_upload_for_another_la_is_refused_before_the_file_is_read(api: Api) -> None:
    text = csv_text([service_record(la_code="319")])
    auth = api.tenancy.auth("case-system")
    r = await api.client.post("/v1/uploads?la=319", content=text.encode(), headers={**auth, "content-type": "text/csv"})
    broken = await api.client.post(  # an unreadable file gets the same 403: the file is not even looked at
        "/v1/uploads?la=319",
        content=b"\xff\xfe garbage",
        headers={**api.tenancy.auth("case-system"), "content-type": "text/csv"},
    )

    assert r.status_code == 403
    assert broken.status_code == 403
    assert "LA 319" in r.json()["detail"]
    assert api.raw.bodies == []


async def test_a_provider_may_submit_for_each_la_that_contracts_it_and_no_other(api: Api) -> None:
    auth = api.tenancy.auth("care-provider")  # LAs 318 and 319
    ok = [await api.client.post("/v1/records", json=service_record(la_code=la), headers=auth) for la in ("318", "319")]
    refused = await api.client.post("/v1/records", json=service_record(la_code="102"), headers=auth)

    assert [r.status_code for r in ok] == [202, 202]
    assert refused.status_code == 403
    assert api.raw.keys == [b"318", b"319"]
    assert {h["cld-source"] for h in api.raw.headers} == {"care-provider"}


async def test_the_source_is_the_keys_holder_never_the_client_header(api: Api) -> None:
    auth = api.tenancy.auth("case-system")
    r = await api.client.post("/v1/records", json=service_record(), headers={**auth, "X-CLD-Source": "regional-hub"})
    text = csv_text([service_record()])
    u = await api.client.post(
        "/v1/uploads?la=318",
        content=text.encode(),
        headers={**auth, "content-type": "text/csv", "X-CLD-Source": "other-la-system"},
    )

    assert (r.status_code, u.status_code) == (202, 202)
    assert [h["cld-source"] for h in api.raw.headers] == ["case-system", "case-system"]


@pytest.mark.parametrize(
    ("sent", "published"),
    [
        ("objection", "objection"),
        ("National-Data-Opt-Out, objection", "national-data-opt-out,objection"),
        ("", None),
    ],
)
async def test_an_opt_out_header_is_passed_on_to_the_raw_topic(api: Api, sent: str, published: str | None) -> None:
    auth = {**api.tenancy.auth("case-system"), "cld-opt-out": sent}
    r1 = await api.client.post("/v1/records", json=service_record(), headers=auth)
    r2 = await api.client.post("/v1/records/batch", json=[service_record(), service_record()], headers=auth)
    r3 = await api.client.post(
        "/v1/uploads?la=318",
        content=csv_text([service_record()]).encode(),
        headers={**auth, "content-type": "text/csv"},
    )

    assert [r.status_code for r in (r1, r2, r3)] == [202, 202, 202]
    assert len(api.raw.headers) == 4
    assert [h.get("cld-opt-out") for h in api.raw.headers] == [published] * 4
    assert all("opt" not in json.dumps(b) for b in api.raw.bodies)  # metadata, never a record field


async def test_an_unrecognised_opt_out_token_is_refused_with_the_known_tokens(api: Api) -> None:
    r = await api.client.post(
        "/v1/records", json=service_record(), headers={**api.tenancy.auth(), "cld-opt-out": "opt-out-please"}
    )
    assert r.status_code == 422
    assert "national-data-opt-out" in r.json()["detail"]
    assert "opt-out-please" not in r.text
    assert api.raw.bodies == []


async def test_without_a_registry_the_service_refuses_to_start() -> None:
    with pytest.raises(TenancyError, match="CLD_TENANTS_FILE"):
        create_app(IngestSettings(**SETTINGS))  # type: ignore[arg-type]


async def test_open_mode_behaves_as_before_tenancy_and_warns(capsys: pytest.CaptureFixture[str]) -> None:
    app = create_app(IngestSettings(**SETTINGS, tenancy_mode="open"))  # type: ignore[arg-type]
    assert "TENANCY OPEN MODE" in capsys.readouterr().err
    raw = capture(app.state.broker, topics.RAW)
    transport = httpx.ASGITransport(app=app)
    async with TestKafkaBroker(app.state.broker), httpx.AsyncClient(transport=transport, base_url="http://i") as c:
        r1 = await c.post("/v1/records", json=service_record(la_code="999"), headers={"X-CLD-Source": "demo"})
        r2 = await c.post("/v1/records", json=service_record())
    assert (r1.status_code, r2.status_code) == (202, 202)
    assert [h["cld-source"] for h in raw.headers] == ["demo", "unknown"]
    assert open_registry().open_mode  # the registry the app used: never loadable from a file
