"""Event envelopes carried on the topics in ``cld_schemas.topics``. Events are past-tense facts."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field

from cld_schemas.spec import FieldStatus, Release, Validity


class _Event(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @classmethod
    def trusted(cls, **values: Any) -> Self:
        """The event from values a service built itself, every one already of its field's type (nested events
        as events), without validating them again; every field must be given. For the services' hot paths:
        pydantic's ``model_construct`` does the same and more (defaults, aliases) at about 20 µs for a
        ``RecordValidated`` with three findings, where this costs a few. Serialised with ``wire_json``, it is
        the same bytes as ``model_dump_json`` (tests/unit/test_wire_models.py)."""
        event = cls.__new__(cls)
        object.__setattr__(event, "__dict__", values)
        object.__setattr__(event, "__pydantic_fields_set__", set(values))
        object.__setattr__(event, "__pydantic_extra__", None)
        object.__setattr__(event, "__pydantic_private__", None)
        return event

    def wire_json(self) -> bytes:
        """The event's bytes on its topic (``model_dump_json``, as bytes)."""
        return self.__pydantic_serializer__.to_json(self)


class Finding(_Event):
    """One DQ finding for one field of one record. ``message`` never holds a value from the record."""

    field: str = Field(description="The spec's column header, e.g. 'NHS Number'.")
    status: FieldStatus
    validity: Validity
    rule: str = Field(description="Stable rule id (see the spec data's rules, or a status rule id).")
    message: str
    fix: str | None = Field(
        default=None,
        description="How to correct the value, where one can be known (else says so); never a personal value.",
    )


class Provenance(_Event):
    source: str = Field(description="The source system that sent the record (an LA system or a provider).")
    event_id: str = Field(description="Idempotency key: the same id sent twice is one record.")
    received_at: datetime
    topic: str | None = None
    partition: int | None = None
    offset: int | None = None
    opt_outs: list[str] = Field(
        default_factory=list,
        description=(
            "Opt-out and objection flags the source attached to the record (raw-topic header cld-opt-out): "
            "national-data-opt-out, objection, or unrecognised (an unknown token, counted as an opt-out). "
            "Metadata, never a CLD column: ignored for NHS England (required by law), applied to other exports."
        ),
    )


class RecordValidated(_Event):
    """A readable record with its DQ findings. Failed values are reported here, never dropped."""

    la_code: str
    release: Release
    provenance: Provenance
    record: dict[str, str | None] = Field(description="Spec fields by snake_case name, dates as dd/mm/yyyy.")
    findings: list[Finding] = Field(default_factory=list)
    failed: bool = Field(description="True when any finding's validity starts with 'Failed'.")
    withdrawn: bool = Field(default=False, description="The source withdrew this record.")
    validated_at: datetime


class RecordPseudonymised(_Event):
    """The pseudonymised form of a validated record, as it would leave for NHS England's onward sharing."""

    la_code: str
    provenance: Provenance
    key_id: str = Field(description="Which pseudonymisation key was used (for rotation), never the key.")
    purpose: str
    record: dict[str, str | None]
    withdrawn: bool = False
    pseudonymised_at: datetime


class SubmissionState(StrEnum):
    REQUESTED = "requested"
    ASSEMBLED = "assembled"
    CHECKED = "checked"
    APPROVED = "approved"
    SENT = "sent"
    ACKNOWLEDGED = "acknowledged"
    FAILED = "failed"
    SUPERSEDED = "superseded"


class SubmissionEvent(_Event):
    """A step in a submission's life. The sequence on ``cld.submissions.v1`` is the audit trail."""

    submission_id: str
    la_code: str
    period_start: date
    period_end: date
    state: SubmissionState
    at: datetime
    by: str | None = Field(default=None, description="Operator or service that took the step.")
    version: int = 1
    supersedes: str | None = None
    file_sha256: str | None = None
    rows: int | None = None
    message_id: str | None = None
    detail: str | None = Field(default=None, description="Human-readable; never personal data.")
    # Optional, added so the submission history can be rebuilt from this topic alone (issue 12, item 4);
    # absent in events written before.
    file_name: str | None = Field(default=None, description="The assembled file's name (set from 'assembled').")
    size_bytes: int | None = Field(default=None, description="The assembled file's size in bytes.")
    transport: str | None = Field(default=None, description="How it was sent (mesh, file_export; from 'sent').")
    superseded_by: str | None = Field(
        default=None, description="The submission id of the version that superseded this one (on 'superseded')."
    )


class DeadLetterReason(StrEnum):
    """Bounded set of reasons (they are also metric label values)."""

    NOT_JSON = "not_json"
    NOT_UTF8 = "not_utf8"
    NOT_AN_OBJECT = "not_an_object"
    UNKNOWN_FIELD = "unknown_field"
    WRONG_TYPE = "wrong_type"
    TOO_LARGE = "too_large"
    MISSING_LA_CODE = "missing_la_code"
    LA_CODE_MISMATCH = "la_code_mismatch"
    UNKNOWN_SOURCE = "unknown_source"
    SOURCE_NOT_ALLOWED = "source_not_allowed"
    PROCESSING_ERROR = "processing_error"
    UNREADABLE_HEADER = "unreadable_header"
    """A header value that is not UTF-8 text."""
    AMBIGUOUS_HEADER = "ambiguous_header"
    """A ``cld-*`` header given twice with different values (never "last wins")."""
    UNKNOWN_ACTION = "unknown_action"
    """A ``cld-action`` other than ``upsert`` or ``withdraw`` (never guessed to be an upsert)."""


class DeadLetter(_Event):
    """What could not be processed. Points at the original message; never copies its payload."""

    reason: DeadLetterReason
    detail: str = Field(description="Clear reason in words; never a value from the payload.")
    topic: str
    partition: int | None = None
    offset: int | None = None
    key: str | None = Field(default=None, description="The message key (an LA code), when it is one.")
    payload_hmac: str | None = Field(
        default=None,
        description=(
            "HMAC-SHA256 (hex) of the payload under the deployment's dead-letter key: equal payloads share it "
            "within a deployment, and it cannot be reversed without the key. Absent when no key is configured."
        ),
    )
    payload_bytes: int
    service: str
    at: datetime
