"""Strict input at the ingest API (issue 10, findings 2, 8 and 11): a CSV with broken quotes, an
Idempotency-Key reused with another body, JSON with the wrong Content-Type or JSON types the contract does
not allow. Each is a clear 4xx that names a line or a field, never a value, and publishes nothing."""

from __future__ import annotations

import csv
import io
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
