"""Sharing policy: NHS England's flow ignores opt-outs by law; any other export needs a recorded basis (issue 6 s.2)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from cld_governance.loaders import default_policy, load_policy
from cld_governance.sharing import (
    NHS_ENGLAND,
    OPT_OUT_HEADER,
    ExportPlan,
    Form,
    OptOut,
    RecordMeta,
    Refusal,
    RefusalReason,
    SharingPolicy,
    SharingPolicyError,
    opt_out_header,
    parse_opt_out_header,
    parse_policy,
    plan_export,
)

LA = "318"
AT = datetime(2025, 7, 1, 9, 30, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[2]


def _records() -> list[RecordMeta]:
    return [
        RecordMeta("ev-1", LA),
        RecordMeta("ev-2", LA, frozenset({OptOut.NATIONAL_DATA_OPT_OUT})),
        RecordMeta("ev-3", LA, frozenset({OptOut.OBJECTION})),
        RecordMeta("ev-4", LA),
        RecordMeta("ev-5", LA, frozenset({OptOut.UNRECOGNISED})),
    ]


def _policy_with_basis(*, la_codes: list[str] | None = None) -> SharingPolicy:
    data: dict[str, Any] = json.loads(json.dumps(default_policy().model_dump(mode="json")))
    data["recipients"].append(
        {
            "id": "partner-icb",
            "name": "Partner Integrated Care Board",
            "legal_basis": {
                "summary": "A data sharing agreement for population health planning.",
                "instruments": ["Data sharing agreement DSA-0001 (synthetic)"],
                "la_codes": la_codes,
            },
            "purposes": ["population health planning"],
        }
    )
    return parse_policy(data)


# ---- opt-out flags ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "flags"),
    [
        (None, set()),
        ("", set()),
        ("national-data-opt-out", {OptOut.NATIONAL_DATA_OPT_OUT}),
        (b"objection", {OptOut.OBJECTION}),
        (" Objection , NATIONAL-DATA-OPT-OUT ", {OptOut.OBJECTION, OptOut.NATIONAL_DATA_OPT_OUT}),
        ("type-2", {OptOut.UNRECOGNISED}),  # fail closed
        (b"\xff\xfe", {OptOut.UNRECOGNISED}),  # not UTF-8: still never raises
    ],
)
def test_the_opt_out_header_is_parsed_failing_closed(value: str | bytes | None, flags: set[OptOut]) -> None:
    assert parse_opt_out_header(value) == frozenset(flags)


def test_record_meta_reads_the_header_case_insensitively() -> None:
    meta = RecordMeta.from_headers(record_id="e", la_code=LA, headers={"CLD-Opt-Out": b"objection"})
    assert meta.opt_outs == {OptOut.OBJECTION}
    value = opt_out_header([OptOut.OBJECTION, OptOut.NATIONAL_DATA_OPT_OUT])
    assert RecordMeta.from_headers(record_id="e", la_code=LA, headers={OPT_OUT_HEADER: value}).opt_outs == {
        OptOut.OBJECTION,
        OptOut.NATIONAL_DATA_OPT_OUT,
    }


# ---- NHS England --------------------------------------------------------------------------------------


def test_nhs_england_receives_opt_out_records_identifiable() -> None:
    plan = plan_export(default_policy(), NHS_ENGLAND, _records(), la_code=LA, requested_by="submission", at=AT)
    assert isinstance(plan, ExportPlan)
    assert plan.include == ("ev-1", "ev-2", "ev-3", "ev-4", "ev-5")
    assert plan.excluded_opt_out == 0
    assert plan.opt_outs_applied is False
    assert plan.form is Form.IDENTIFIABLE
    assert "Directions 2023" in " ".join(plan.legal_basis.instruments)
    assert plan.audit.decision == "planned"
    assert plan.audit.records_included == 5
    assert plan.audit.at == AT
    assert plan.audit.by == "submission"


# ---- other recipients ---------------------------------------------------------------------------------


def test_an_export_to_a_recipient_without_a_legal_basis_is_refused_and_audited() -> None:
    refusal = plan_export(default_policy(), "example-icb", _records(), la_code=LA, requested_by="officer-a", at=AT)
    assert isinstance(refusal, Refusal)
    assert refusal.reason is RefusalReason.NO_LEGAL_BASIS
    audit = refusal.audit
    assert (audit.decision, audit.reason, audit.recipient_id, audit.by, audit.la_code) == (
        "refused",
        RefusalReason.NO_LEGAL_BASIS,
        "example-icb",
        "officer-a",
        LA,
    )
    assert audit.legal_basis is None
    assert audit.records_considered == 5
    assert audit.records_included == 0
    line = audit.to_json_line()
    assert line.endswith("\n")
    assert json.loads(line)["decision"] == "refused"
    assert not any(f"ev-{i}" in line for i in range(1, 6))  # counts only, never record ids


def test_a_recipient_with_a_basis_gets_opt_outs_applied_and_pseudonymised_data() -> None:
    plan = plan_export(_policy_with_basis(), "partner-icb", _records(), la_code=LA, requested_by="officer-a", at=AT)
    assert isinstance(plan, ExportPlan)
    assert plan.include == ("ev-1", "ev-4")  # national opt-out, objection and unrecognised flags left out
    assert plan.excluded_opt_out == 3
    assert plan.opt_outs_applied is True
    assert plan.form is Form.PSEUDONYMISED
    assert plan.audit.records_excluded_opt_out == 3
    assert plan.audit.legal_basis is not None


def test_asking_for_identifiable_data_for_another_recipient_is_refused() -> None:
    refusal = plan_export(
        _policy_with_basis(), "partner-icb", _records(), la_code=LA, requested_by="o", requested_form=Form.IDENTIFIABLE
    )
    assert isinstance(refusal, Refusal)
    assert refusal.reason is RefusalReason.FORM_NOT_PERMITTED
    assert refusal.audit.decision == "refused"
    assert refusal.audit.form is Form.IDENTIFIABLE


def test_a_basis_recorded_for_other_las_does_not_cover_this_one() -> None:
    policy = _policy_with_basis(la_codes=["319"])
    refusal = plan_export(policy, "partner-icb", _records(), la_code=LA, requested_by="o")
    assert isinstance(refusal, Refusal)
    assert refusal.reason is RefusalReason.BASIS_NOT_FOR_THIS_LA
    assert isinstance(
        plan_export(policy, "partner-icb", [RecordMeta("x", "319")], la_code="319", requested_by="o"), ExportPlan
    )


def test_an_export_cannot_carry_another_las_records() -> None:
    records = [*_records(), RecordMeta("other", "319")]
    for recipient in (NHS_ENGLAND, "partner-icb"):
        refusal = plan_export(_policy_with_basis(), recipient, records, la_code=LA, requested_by="o")
        assert isinstance(refusal, Refusal)
        assert refusal.reason is RefusalReason.RECORD_OF_ANOTHER_LA


def test_an_unknown_recipient_is_refused_and_audited() -> None:
    refusal = plan_export(default_policy(), "data-broker", _records(), la_code=LA, requested_by="o")
    assert isinstance(refusal, Refusal)
    assert refusal.reason is RefusalReason.UNKNOWN_RECIPIENT
    assert refusal.audit.recipient_name is None
    assert refusal.audit.decision == "refused"


# ---- the policy data ----------------------------------------------------------------------------------


def test_opt_outs_can_be_ignored_only_for_a_flow_required_by_law() -> None:
    data = json.loads(json.dumps(default_policy().model_dump(mode="json")))
    data["recipients"][1]["legal_basis"] = {"summary": "An agreement."}
    data["recipients"][1]["opt_outs_apply"] = False
    with pytest.raises(SharingPolicyError, match="required by law"):
        parse_policy(data)


def test_the_policy_must_hold_nhs_englands_basis() -> None:
    data = json.loads(json.dumps(default_policy().model_dump(mode="json")))
    data["recipients"] = [r for r in data["recipients"] if r["id"] != NHS_ENGLAND]
    with pytest.raises(SharingPolicyError, match=NHS_ENGLAND):
        parse_policy(data)


def test_the_deploy_policy_matches_the_packaged_default() -> None:
    deployed = load_policy(ROOT / "deploy" / "config" / "sharing-policy.json")
    assert deployed == default_policy() == load_policy()
    nhse = deployed.nhs_england
    assert nhse.opt_outs_apply is False
    assert nhse.legal_basis is not None
    assert nhse.legal_basis.required_by_law
    assert [r.id for r in deployed.recipients_for(LA)] == [NHS_ENGLAND]  # the example ICB has no basis


def test_an_unreadable_policy_file_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "policy.json"
    bad.write_text("{not json")
    with pytest.raises(SharingPolicyError, match=r"cannot read sharing policy policy\.json"):
        load_policy(bad)
