"""The shipped spec data is internally consistent (what the validator and the tests rely on)."""

from __future__ import annotations

import re

import pytest

from cld_schemas.spec import Completeness, FieldStatus, Release, Validity, load_spec
from cld_validation.rules import Validator

SPEC = load_spec()


def test_load_spec_is_cached() -> None:
    assert load_spec() is SPEC


def test_rule_catalogue_ids_are_unique_and_well_formed() -> None:
    ids = [r.id for r in SPEC.rules]
    assert len(ids) == len(set(ids))
    assert all(re.fullmatch(r"CLD0\d\d|XF0\d\d", i) for i in ids)
    assert all(r.validity.failed for r in SPEC.rules)
    assert SPEC.rule("CLD003").validity is Validity.RELEASE_1
    with pytest.raises(KeyError):
        SPEC.rule("CLD999")


def test_fields_are_ordered_and_uniquely_named() -> None:
    assert [f.order for f in SPEC.fields] == list(range(len(SPEC.fields)))
    assert len({f.name for f in SPEC.fields}) == len(SPEC.fields)
    assert len({f.header.lower() for f in SPEC.fields}) == len(SPEC.fields)
    with pytest.raises(KeyError):
        SPEC.field("favourite_colour")


def test_file_fields_leave_out_la_code() -> None:
    assert "la_code" not in {f.name for f in SPEC.file_fields}
    assert len(SPEC.file_fields) == len(SPEC.fields) - 1 == 49


def test_status_case_ids_are_unique_and_every_field_ends_unconditionally() -> None:
    ids = [c.id for f in SPEC.fields for c in f.status]
    assert len(ids) == len(set(ids))
    for f in SPEC.fields:
        assert f.status, f.name
        assert f.status[-1].when is None, f"{f.name}: the last status case must be unconditional"
        assert all(c.when is not None for c in f.status[:-1]), f"{f.name}: unreachable status case"
        assert all(isinstance(c.status, FieldStatus) for c in f.status)


@pytest.mark.parametrize("release", list(Release))
def test_every_status_condition_compiles(release: Release) -> None:
    Validator(SPEC, release)  # raises ValueError on a condition naming an unknown or uncoded field


def test_coded_fields_have_a_list_per_release_with_unique_values() -> None:
    for f in SPEC.fields:
        if f.format != "code":
            assert f.code_lists is None, f.name
            continue
        for rel in Release:
            cl = f.code_list(rel)
            assert cl is not None, (f.name, rel)
            values = [v.value for v in cl.values]
            assert len(values) == len(set(values)), (f.name, rel)
            if cl.completeness in (Completeness.COMPLETE, Completeness.PROBABLE):
                assert values, (f.name, rel)


def test_pii_fields_match_rules_md_section_4() -> None:
    pii = {f.name for f in SPEC.fields if f.pii}
    assert {"nhs_number", "la_person_unique_identifier", "date_of_birth", "postcode"} <= pii


def test_linked_person_ids_are_pii() -> None:
    assert all(SPEC.field(f"adult_{n}_linked_person_id").pii for n in (1, 2, 3))
