"""Who may receive an LA's CLD records, on what legal basis, in what form, and with which opt-outs applied.

The law draws three lines (shared/reference/nhs-context.md, "Law and policy the product must respect"):

1. The flow to NHS England is required by law: the Collection of Adult Social Care Client Level Data (No 3)
   Directions 2023 (section 254, Health and Social Care Act 2012) and NHS England's Data Provision Notice
   (section 259(1)); an LA must comply (section 259(5)). Neither the UK GDPR right to object nor the national
   data opt-out applies to it, so records flagged with an opt-out are still sent, identifiable (NHS England
   traces and pseudonymises centrally).
2. Sharing with anyone else needs a legal basis recorded for that recipient (and that LA); without one the
   export is refused.
3. For such other sharing, opt-outs and objections apply (flagged records are left out) and the default form
   is pseudonymised.

The policy is data (``deploy/config/sharing-policy.json``; packaged default ``cld_governance/data/``). The decision
is one pure function, :func:`plan_export`, which returns an :class:`ExportPlan` or a :class:`Refusal`, each with
the :class:`AuditEntry` to record: every decision is audited, refusals included. Audit entries hold counts,
ids and the basis, never a record value or record id.

Opt-out flags are *not* CLD columns; they travel as source metadata on the record's message:
the header :data:`OPT_OUT_HEADER` (``cld-opt-out``) with a comma-separated list of :class:`OptOut` tokens,
``national-data-opt-out`` and/or ``objection``. An unrecognised token counts as an opt-out (fail closed:
wrongly leaving a record out of an optional export is the safe error).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from cld_schemas.contract import HEADER_OPT_OUT
from cld_schemas.contract import OptOut as OptOut
from cld_schemas.contract import opt_out_header as opt_out_header
from cld_schemas.contract import parse_opt_out_header as parse_opt_out_header

POLICY_FORMAT: Final = "cld-sharing-policy/1"
NHS_ENGLAND: Final = "nhs-england"
"""The recipient id of the mandated flow."""
OPT_OUT_HEADER: Final = HEADER_OPT_OUT
"""Message header set by the source system (Kafka header or HTTP header) naming the person's opt-outs (the flags,
the header and their parsing are defined once in ``cld_schemas.contract``, re-exported here)."""
ENV_SHARING_POLICY_FILE: Final = "CLD_SHARING_POLICY_FILE"


class Form(StrEnum):
    IDENTIFIABLE = "identifiable"
    PSEUDONYMISED = "pseudonymised"


# --------------------------------------------------------------------------------------------------------
# The policy (data)
# --------------------------------------------------------------------------------------------------------


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class LegalBasis(_Frozen):
    """The recorded legal basis for sharing with one recipient."""

    summary: str = Field(min_length=1, description="One sentence a member of the public can read.")
    instruments: tuple[str, ...] = Field(
        default=(), description="The statutes, directions, notices or agreements relied on, by their titles."
    )
    required_by_law: bool = Field(
        default=False, description="The LA must share (a legal obligation), not merely may (e.g. an agreement)."
    )
    la_codes: tuple[str, ...] | None = Field(
        default=None, description="The LAs this basis covers (e.g. the parties to a data sharing agreement); null: all."
    )
    recorded_by: str | None = Field(default=None, description="Who recorded it (role or team).")
    recorded_on: str | None = Field(default=None, description="When it was recorded (ISO date).")
    review_by: str | None = Field(default=None, description="When it must be reviewed (ISO date).")

    def covers(self, la_code: str) -> bool:
        return self.la_codes is None or la_code in self.la_codes


class Recipient(_Frozen):
    id: str
    name: str
    legal_basis: LegalBasis | None = Field(description="Null: nothing may be exported to this recipient.")
    opt_outs_apply: bool = Field(
        default=True, description="False only for a flow required by law (NHS England's), where they do not apply."
    )
    form: Form = Field(default=Form.PSEUDONYMISED, description="The form sent unless another is asked for.")
    identifiable_permitted: bool = Field(
        default=False, description="The basis allows the identifiable form (NHS England's flow; rare otherwise)."
    )
    purposes: tuple[str, ...] = ()
    onward: str | None = Field(default=None, description="What the recipient does next, in plain words.")
    retention: str | None = Field(default=None, description="How long and where, in plain words.")
    more_information: str | None = None

    @model_validator(mode="after")
    def _lines_the_law_draws(self) -> Recipient:
        if not self.opt_outs_apply and not (self.legal_basis and self.legal_basis.required_by_law):
            raise ValueError(f"recipient {self.id!r}: opt-outs may be ignored only for a flow required by law")
        if self.form is Form.IDENTIFIABLE and not self.identifiable_permitted:
            raise ValueError(f"recipient {self.id!r}: identifiable form needs identifiable_permitted")
        return self


class SharingPolicy(_Frozen):
    format: Literal["cld-sharing-policy/1"] = POLICY_FORMAT
    about: str = ""
    recipients: tuple[Recipient, ...]

    @model_validator(mode="after")
    def _has_nhs_england(self) -> SharingPolicy:
        ids = [r.id for r in self.recipients]
        if len(set(ids)) != len(ids):
            raise ValueError("a recipient id appears twice")
        nhse = self.find(NHS_ENGLAND)
        if nhse is None or nhse.legal_basis is None or not nhse.legal_basis.required_by_law:
            raise ValueError(f"the policy must hold recipient {NHS_ENGLAND!r} with its legal basis (required by law)")
        return self

    def find(self, recipient_id: str) -> Recipient | None:
        return next((r for r in self.recipients if r.id == recipient_id), None)

    @property
    def nhs_england(self) -> Recipient:
        found = self.find(NHS_ENGLAND)
        assert found is not None  # guaranteed by the validator
        return found

    def recipients_for(self, la_code: str) -> tuple[Recipient, ...]:
        """Recipients with a legal basis covering this LA (what the LA's transparency material must name)."""
        return tuple(r for r in self.recipients if r.legal_basis is not None and r.legal_basis.covers(la_code))


class SharingPolicyError(ValueError):
    """The sharing policy file cannot be used; the message says why."""


def parse_policy(data: Any, *, name: str = "sharing policy") -> SharingPolicy:
    try:
        return SharingPolicy.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'policy'}: {e['msg']}" for e in exc.errors())
        raise SharingPolicyError(f"{name} is invalid: {problems}") from exc


# --------------------------------------------------------------------------------------------------------
# Decisions
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RecordMeta:
    """What an export decision needs about one record: which record, whose, and its opt-outs. No CLD values."""

    record_id: str
    la_code: str
    opt_outs: frozenset[OptOut] = frozenset()

    @classmethod
    def from_headers(cls, *, record_id: str, la_code: str, headers: Mapping[str, str | bytes]) -> RecordMeta:
        """From message headers (names compared case-insensitively)."""
        value = next((v for k, v in headers.items() if k.lower() == OPT_OUT_HEADER), None)
        return cls(record_id=record_id, la_code=la_code, opt_outs=parse_opt_out_header(value))


class RefusalReason(StrEnum):
    UNKNOWN_RECIPIENT = "unknown_recipient"
    NO_LEGAL_BASIS = "no_legal_basis"
    BASIS_NOT_FOR_THIS_LA = "basis_not_for_this_la"
    FORM_NOT_PERMITTED = "form_not_permitted"
    RECORD_OF_ANOTHER_LA = "record_of_another_la"


class AuditEntry(_Frozen):
    """One export decision, as recorded. Counts and ids only: never a record id or value."""

    at: datetime
    by: str = Field(description="The operator or service that asked.")
    la_code: str
    recipient_id: str
    recipient_name: str | None
    decision: Literal["planned", "refused"]
    reason: RefusalReason | None = None
    legal_basis: str | None = Field(description="The recorded basis's summary, or None when there was none.")
    instruments: tuple[str, ...] = ()
    form: Form | None = None
    opt_outs_applied: bool | None = None
    records_considered: int
    records_included: int
    records_excluded_opt_out: int

    def to_json_line(self) -> str:
        """One JSON line for an append-only audit log."""
        return self.model_dump_json() + "\n"


@dataclass(frozen=True, slots=True)
class ExportPlan:
    recipient_id: str
    la_code: str
    form: Form
    legal_basis: LegalBasis
    opt_outs_applied: bool
    include: tuple[str, ...]
    """Record ids to export, in the order given."""
    excluded_opt_out: int
    audit: AuditEntry


@dataclass(frozen=True, slots=True)
class Refusal:
    reason: RefusalReason
    detail: str
    """Safe to show and log: names the recipient and LA, never a record."""
    audit: AuditEntry


def plan_export(
    policy: SharingPolicy,
    recipient_id: str,
    records_meta: Iterable[RecordMeta],
    *,
    la_code: str,
    requested_by: str,
    requested_form: Form | None = None,
    at: datetime | None = None,
) -> ExportPlan | Refusal:
    """Decide an export of one LA's records to one recipient, and the audit entry for the decision.

    NHS England (required by law): every record, opt-out flags ignored, identifiable. Any other recipient:
    refused without a recorded legal basis covering this LA; otherwise opt-out/objection-flagged records are
    left out and the form defaults to the recipient's (pseudonymised unless the policy says otherwise).
    """
    when = at or datetime.now(UTC)
    records = list(records_meta)
    recipient = policy.find(recipient_id)

    def refuse(reason: RefusalReason, detail: str, form: Form | None = None) -> Refusal:
        basis = recipient.legal_basis if recipient else None
        entry = AuditEntry(
            at=when,
            by=requested_by,
            la_code=la_code,
            recipient_id=recipient_id,
            recipient_name=recipient.name if recipient else None,
            decision="refused",
            reason=reason,
            legal_basis=basis.summary if basis else None,
            instruments=basis.instruments if basis else (),
            form=form,
            records_considered=len(records),
            records_included=0,
            records_excluded_opt_out=0,
        )
        return Refusal(reason=reason, detail=detail, audit=entry)

    if recipient is None:
        return refuse(RefusalReason.UNKNOWN_RECIPIENT, "the recipient is not in the sharing policy")
    basis = recipient.legal_basis
    if basis is None:
        return refuse(RefusalReason.NO_LEGAL_BASIS, f"no legal basis is recorded for sharing with {recipient.name}")
    if not basis.covers(la_code):
        return refuse(
            RefusalReason.BASIS_NOT_FOR_THIS_LA,
            f"the legal basis recorded for {recipient.name} does not cover this LA",
        )
    form = requested_form or recipient.form
    if form is Form.IDENTIFIABLE and not recipient.identifiable_permitted:
        return refuse(RefusalReason.FORM_NOT_PERMITTED, f"{recipient.name} may receive only pseudonymised data", form)
    if any(r.la_code != la_code for r in records):
        # One LA's decision covers only that LA's records (tenant isolation).
        return refuse(RefusalReason.RECORD_OF_ANOTHER_LA, "the export holds records of another LA", form)

    if recipient.opt_outs_apply:
        include = tuple(r.record_id for r in records if not r.opt_outs)
    else:
        include = tuple(r.record_id for r in records)  # by law: opt-outs do not apply to this flow
    excluded = len(records) - len(include)
    entry = AuditEntry(
        at=when,
        by=requested_by,
        la_code=la_code,
        recipient_id=recipient.id,
        recipient_name=recipient.name,
        decision="planned",
        legal_basis=basis.summary,
        instruments=basis.instruments,
        form=form,
        opt_outs_applied=recipient.opt_outs_apply,
        records_considered=len(records),
        records_included=len(include),
        records_excluded_opt_out=excluded,
    )
    return ExportPlan(
        recipient_id=recipient.id,
        la_code=la_code,
        form=form,
        legal_basis=basis,
        opt_outs_applied=recipient.opt_outs_apply,
        include=include,
        excluded_opt_out=excluded,
        audit=entry,
    )
