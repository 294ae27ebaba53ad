"""Property tests for the parsers at the mesh's entry points: on arbitrary bytes and JSON they raise nothing but
their documented error types (ingest: ``EnvelopeError``, pydantic ``ValidationError``, ``HTTPException`` for
uploads; validation intake: nothing at all, a :class:`Rejected` instead), and date normalisation round-trips."""

from __future__ import annotations

import json
import tempfile
from datetime import date
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from starlette.exceptions import HTTPException

from cld_ingest.auth import presented_key
from cld_ingest.envelope import EnvelopeError, envelope, opt_out_value, resolve_la_code, safe_field_name
from cld_ingest.service import _check_file, _check_lines
from cld_runtime.messages import RawMessage
from cld_schemas.events import DeadLetterReason
from cld_schemas.record import CLDRecord
from cld_validation.intake import Intake, Rejected, date_fields, normalise_dates, read_message
from tests.support.records import service_record
from tests.support.tenancy import make_tenancy

FAST = settings(
    max_examples=200,
    deadline=None,  # no timing in tests (speed is measured in make bench)
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
NAMES = list(CLDRecord.model_fields)
TENANTS = make_tenancy().registry
DATE_FIELDS = sorted(date_fields())

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)
records_json = st.dictionaries(st.sampled_from(NAMES) | st.text(max_size=12), json_values, max_size=12)
header_names = st.sampled_from(["cld-source", "cld-event-id", "cld-action", "cld-received-at", "cld-opt-out", "x"])


def raw(value: bytes | None, key: bytes | None, headers: dict[str, bytes]) -> RawMessage:
    return RawMessage(value=value, key=key, headers=headers, topic="t", partition=0, offset=7, timestamp_ms=None)


def _check_intake(out: Intake | Rejected) -> None:
    assert isinstance(out, Intake | Rejected)
    if isinstance(out, Rejected):
        assert isinstance(out.reason, DeadLetterReason)
        assert out.detail
    else:
        assert len(out.la_code) == 3
        assert out.la_code.isdigit()


# ---- validation intake: total over arbitrary input ----


@FAST
@given(
    value=st.none() | st.binary(max_size=400),
    key=st.none() | st.binary(max_size=8),
    headers=st.dictionaries(header_names, st.binary(max_size=40), max_size=5),
    enforce=st.booleans(),
)
def test_intake_never_raises_on_arbitrary_bytes(
    value: bytes | None, key: bytes | None, headers: dict[str, bytes], enforce: bool
) -> None:
    _check_intake(read_message(raw(value, key, headers), max_bytes=300, tenants=TENANTS if enforce else None))


@FAST
@given(body=records_json, key=st.sampled_from([None, b"318", b"319", b"3", b"abc"]), enforce=st.booleans())
def test_intake_never_raises_on_arbitrary_json_objects(body: dict[str, Any], key: bytes | None, enforce: bool) -> None:
    value = json.dumps(body).encode()
    out = read_message(
        raw(value, key, {"cld-source": b"case-system"}), max_bytes=1 << 20, tenants=TENANTS if enforce else None
    )
    _check_intake(out)


@FAST
@given(depth=st.integers(min_value=1, max_value=5000), opener=st.sampled_from([b"[", b'{"a":']))
def test_intake_rejects_any_nesting_depth_without_raising(depth: int, opener: bytes) -> None:
    closer = b"]" if opener == b"[" else b"}"
    value = opener * depth + (b"1" if opener != b"[" else b"") + closer * depth
    _check_intake(read_message(raw(value, b"318", {}), max_bytes=1 << 20))


@FAST
@given(record=st.fixed_dictionaries({}, optional={n: st.text(max_size=30) for n in NAMES}))
def test_a_readable_record_is_never_rejected_for_its_values(record: dict[str, str]) -> None:
    """Values are the DQ rules' business: any text in known fields is read (never dead-lettered)."""
    record = {k: v for k, v in record.items() if k != "la_code"}
    out = read_message(
        raw(json.dumps(record).encode(), b"318", {"cld-source": b"case-system"}), max_bytes=1 << 20, tenants=TENANTS
    )
    assert isinstance(out, Intake)


# ---- date normalisation ----


@FAST
@given(d=st.dates(min_value=date(1000, 1, 1)), field=st.sampled_from(DATE_FIELDS))
def test_iso_dates_normalise_to_the_spec_form_and_back(d: date, field: str) -> None:
    out = normalise_dates({field: d.isoformat()})
    assert out[field] == d.strftime("%d/%m/%Y")
    day, month, year = (out[field] or "").split("/")
    assert date(int(year), int(month), int(day)) == d  # round trip
    assert normalise_dates(dict(out)) == out  # idempotent: the spec form is left as it is


@FAST
@given(text=st.text(max_size=20), field=st.sampled_from(DATE_FIELDS))
def test_anything_but_an_iso_date_is_left_for_the_rules(text: str, field: str) -> None:
    out = normalise_dates({field: text})
    if out[field] != text:
        y, m, d = text.split("-")
        assert out[field] == f"{d}/{m}/{y}"


# ---- ingest: envelope and record parsing ----


@FAST
@given(body=records_json)
def test_the_record_model_raises_only_validation_errors(body: dict[str, Any]) -> None:
    try:
        record = CLDRecord.model_validate(body)
    except ValidationError:
        return
    assert set(record.values()) <= set(NAMES)


@FAST
@given(record_la=st.none() | st.text(max_size=5), given_la=st.none() | st.text(max_size=5))
def test_resolve_la_code_raises_only_envelope_errors(record_la: str | None, given_la: str | None) -> None:
    error: EnvelopeError | None = None
    try:
        la = resolve_la_code(record_la, given_la)
    except EnvelopeError as exc:
        error = exc
    if error is not None:  # one of three fixed messages: never the value
        assert str(error).startswith(("the record's la_code differs", "no LA code", "the LA code is not"))
        return
    assert len(la) == 3
    assert la.isdigit()


@FAST
@given(header=st.none() | st.text(max_size=60))
def test_opt_out_value_is_canonical_or_an_envelope_error(header: str | None) -> None:
    try:
        value = opt_out_value(header)
    except EnvelopeError:
        return
    assert value is None or set(value.split(",")) <= {"national-data-opt-out", "objection"}


@FAST
@given(name=st.text(max_size=80))
def test_safe_field_name_quotes_only_names_close_to_spec_fields(name: str) -> None:
    out = safe_field_name(name, NAMES)
    assert out == name or "not in the specification" in out


@FAST
@given(headers=st.lists(st.tuples(st.sampled_from([b"authorization", b"x-api-key", b"x"]), st.binary(max_size=60))))
def test_presented_key_never_raises(headers: list[tuple[bytes, bytes]]) -> None:
    key = presented_key(headers)
    assert key is None or (isinstance(key, str) and key == key.strip() and key)


@FAST
@given(record=st.dictionaries(st.sampled_from(NAMES), st.none() | st.text(max_size=30)), opt=st.booleans())
def test_an_envelope_value_is_the_record_without_blanks_and_with_its_la(
    record: dict[str, str | None], opt: bool
) -> None:
    from datetime import UTC, datetime

    env = envelope(
        record,
        la_code="318",
        event_id=None,
        source="case-system",
        received_at=datetime.now(UTC),
        channel="csv",
        opt_out="objection" if opt else None,
    )
    assert json.loads(env.value) == {**{k: v for k, v in record.items() if v is not None}, "la_code": "318"}
    assert env.event_id.startswith("csv:")
    assert ("cld-opt-out" in env.headers) is opt


@settings(FAST, max_examples=100)
@given(content=st.binary(max_size=3000) | st.text(max_size=2000).map(str.encode))
def test_the_upload_checks_raise_only_http_exceptions(content: bytes) -> None:
    with tempfile.SpooledTemporaryFile() as spool:
        spool.write(content)
        spool.seek(0)
        status = 202
        try:
            _check_lines(spool, 1024)
            _check_file(spool, "318", max_columns=200)
        except HTTPException as exc:
            status = exc.status_code
        assert status == 202 or 400 <= status < 500


def test_a_known_good_record_passes_every_parser() -> None:
    """The properties above are not vacuous: the good path is reachable."""
    body = json.dumps(service_record()).encode()
    out = read_message(raw(body, b"318", {"cld-source": b"case-system"}), max_bytes=1 << 20, tenants=TENANTS)
    assert isinstance(out, Intake)
    assert out.source == "case-system"
    assert CLDRecord.model_validate(service_record()).values()["nhs_number"] == "9990000018"
