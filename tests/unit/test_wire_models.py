"""The services build their wire events as the models (``_Event.trusted``, no hand-built dicts) without validating
them again; built so, an event is the model it would validate to and serialises to the same bytes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from cld_runtime.messages import RawMessage
from cld_schemas.events import Finding, Provenance, RecordPseudonymised, RecordValidated
from cld_schemas.spec import FieldStatus, Release, Validity
from cld_validation.intake import Intake
from cld_validation.service import validated_event, validated_message

NOW = datetime(2026, 12, 6, 21, 0, tzinfo=UTC)


def _provenance(**extra: object) -> dict[str, object]:
    return {
        "source": "lasys",
        "event_id": "e-1",
        "received_at": NOW,
        "topic": "cld.events.raw.v1",
        "partition": 2,
        "offset": 41,
        "opt_outs": ["objection"],
        **extra,
    }


def _validated_values() -> dict[str, object]:
    finding = {
        "field": "NHS Number",
        "status": FieldStatus.MANDATORY,
        "validity": Validity.INVALID,
        "rule": "CLD021",
        "message": "NHS Number fails its check digit.",
        "fix": "",
    }
    return {
        "la_code": "318",
        "release": Release.R2,
        "provenance": _provenance(),
        "record": {"la_code": "318", "nhs_number": "9990000018", "gender": None},
        "findings": [finding],
        "failed": True,
        "withdrawn": False,
        "validated_at": NOW,
    }


def test_a_trusted_record_validated_is_the_validated_model_and_its_bytes() -> None:
    values = _validated_values()
    validated = RecordValidated.model_validate(values)
    trusted = RecordValidated.trusted(
        **{
            **values,
            "provenance": Provenance.trusted(**_provenance()),
            "findings": [Finding.trusted(**f) for f in values["findings"]],
        }
    )
    assert trusted == validated
    assert trusted.wire_json() == validated.model_dump_json().encode()
    assert RecordValidated.model_validate_json(trusted.wire_json()) == validated


def test_a_trusted_record_pseudonymised_is_the_validated_model_and_its_bytes() -> None:
    values = {
        "la_code": "318",
        "provenance": Provenance(**_provenance()),
        "key_id": "k1",
        "purpose": "nhs-england-preview",
        "record": {"nhs_number_pseudo": "ab12", "gender": "Female"},
        "withdrawn": False,
        "pseudonymised_at": NOW,
    }
    validated = RecordPseudonymised.model_validate(values)
    trusted = RecordPseudonymised.trusted(**values)
    assert trusted == validated
    assert trusted.wire_json() == validated.model_dump_json().encode()


@pytest.mark.parametrize("withdrawn", [False, True])
def test_the_validation_service_s_event_reads_back_as_itself(withdrawn: bool) -> None:
    intake = Intake(
        la_code="318",
        record={"la_code": "318", "nhs_number": "123", "gender": "female", "event_start_date": "01/10/2025"},
        withdrawn=withdrawn,
        source="lasys",
        event_id="e-9",
        received_at=NOW,
        channel="kafka",
        opt_outs=("national-data-opt-out",),
    )
    msg = RawMessage(value=b"{}", key=b"318", headers={}, topic="cld.events.raw.v1", partition=0, offset=7)
    event = validated_event(intake, msg, release=Release.R2, now=NOW)
    wire = validated_message(intake, msg, release=Release.R2, now=NOW)
    assert wire.body == event.wire_json()
    again = RecordValidated.model_validate_json(wire.body)
    assert again == event
    assert again.failed is wire.failed
    assert bool(again.findings) is not withdrawn  # a withdrawal carries no findings
    assert again.provenance.opt_outs == ["national-data-opt-out"]
