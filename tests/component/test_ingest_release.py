"""Issue 13 item 6, per upload: the ``cld-release`` request header travels to the raw topic for the validation
service to use; a bad value is refused with a clear message and nothing is published."""

from __future__ import annotations

import pytest

from tests.component import test_ingest_service
from tests.component.test_ingest_service import Api, csv_text
from tests.support.records import service_record

api = test_ingest_service.api  # the same ingest harness (by assignment: no F811)


@pytest.mark.parametrize(("given", "sent"), [("r1", "r1"), ("R2", "r2"), ("Release 1", "r1"), ("2", "r2")])
async def test_the_release_header_of_an_upload_reaches_every_raw_message(api: Api, given: str, sent: str) -> None:
    text = csv_text([service_record(event_reference=f"EV{i}") for i in range(3)])
    r = await api.client.post(
        "/v1/uploads?la=318", content=text.encode(), headers={"content-type": "text/csv", "cld-release": given}
    )
    assert r.status_code == 202, r.text
    assert [h.get("cld-release") for h in api.raw.headers] == [sent] * 3


async def test_records_and_batches_carry_it_and_without_it_there_is_no_header(api: Api) -> None:
    await api.client.post("/v1/records", json=service_record(), headers={"cld-release": "r1", "Idempotency-Key": "a"})
    await api.client.post("/v1/records/batch", json=[service_record()], headers={"cld-release": "r2"})
    await api.client.post("/v1/records", json=service_record(), headers={"Idempotency-Key": "b"})
    assert [h.get("cld-release") for h in api.raw.headers] == ["r1", "r2", None]


async def test_the_same_row_uploaded_with_another_release_is_another_event(api: Api) -> None:
    text = csv_text([service_record()]).encode()
    for release in (None, "r1", "r1"):
        headers = {"content-type": "text/csv", **({"cld-release": release} if release else {})}
        assert (await api.client.post("/v1/uploads?la=318", content=text, headers=headers)).status_code == 202
    first, second, third = (h["cld-event-id"] for h in api.raw.headers)
    assert first != second  # re-checked under Release 1: the new version replaces the first downstream
    assert second == third  # the same upload again: idempotent


@pytest.mark.parametrize("bad", ["r3", "release two", "1; drop"])
async def test_a_bad_release_header_is_refused_and_nothing_is_published(api: Api, bad: str) -> None:
    text = csv_text([service_record()])
    r = await api.client.post(
        "/v1/uploads?la=318", content=text.encode(), headers={"content-type": "text/csv", "cld-release": bad}
    )
    assert r.status_code == 422
    assert "cld-release" in r.text
    assert api.raw.bodies == []
