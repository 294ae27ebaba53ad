"""Policy, keys, keyed pseudonyms and generalisation (cld_pseudonymisation). Synthetic data only."""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from cld_pseudonymisation import (
    Action,
    LookupFileError,
    Namespace,
    PolicyError,
    PostcodeLookup,
    Pseudonymiser,
    PseudonymiserError,
    PseudonymKey,
    PseudonymKeyError,
    load_policy,
    person_key,
    qi_getter,
    qi_tuple,
    row_order,
)
from cld_pseudonymisation.generalise import age_band, parse_date, postcode_parts
from cld_pseudonymisation.policy import policy_from_data
from cld_pseudonymisation.pseudonymiser import PSEUDONYM_HEX_CHARS, hmac_message
from cld_schemas.spec import load_spec

KEY_A = bytes(range(32))
KEY_B = bytes(range(1, 33))
POLICY_PATH = Path(__file__).parents[2] / "services/pseudonymisation/cld_pseudonymisation/policy.json"


def _ps(key: bytes = KEY_A, tenant: str = "E09000001", purpose: str = "nhse", **kw: object) -> Pseudonymiser:
    return Pseudonymiser(load_policy(), PseudonymKey(key), tenant=tenant, purpose=purpose, **kw)  # type: ignore[arg-type]


def _record(**values: str | None) -> dict[str, str | None]:
    rec: dict[str, str | None] = dict.fromkeys(f.name for f in load_spec().fields)
    rec.update(reporting_period_end_date="31/03/2026", la_code="E09000001")
    rec.update(values)
    return rec


# ---- policy -------------------------------------------------------------------------------------------


def test_policy_covers_every_spec_field_exactly_once() -> None:
    policy = load_policy()
    assert [f.name for f in policy.fields] == [f.name for f in load_spec().fields]
    assert all(len(f.why) > 20 for f in policy.fields)


def test_policy_never_keeps_personal_data_or_free_text() -> None:
    policy = load_policy()
    for sf in load_spec().fields:
        if sf.pii or sf.format == "text":
            assert policy.field(sf.name).action is not Action.KEEP, sf.name


def test_policy_actions_for_direct_identifiers() -> None:
    policy = load_policy()
    for name in ("first_name", "last_name", "gp_practice_name", "provider_cqc_location_name"):
        assert policy.field(name).action is Action.DROP
    for name in ("nhs_number", "la_person_unique_identifier", "adult_1_linked_person_id", "event_reference"):
        assert policy.field(name).action is Action.PSEUDONYMISE
    for name in ("date_of_birth", "date_of_death", "postcode", "event_description"):
        assert policy.field(name).action is Action.GENERALISE


def test_a_new_spec_field_without_a_policy_entry_is_refused() -> None:
    spec = load_spec()
    extra = spec.field("gender").model_copy(update={"name": "favourite_colour", "header": "Favourite Colour"})
    bigger = spec.model_copy(update={"fields": (*spec.fields, extra)})
    data = json.loads(POLICY_PATH.read_text(encoding="utf-8"))
    with pytest.raises(PolicyError, match="favourite_colour"):
        policy_from_data(data, spec=bigger)
    data["fields"]["favourite_colour"] = {"action": "keep", "why": "A made-up field for this test only."}
    assert policy_from_data(data, spec=bigger).field("favourite_colour").action is Action.KEEP


def test_policy_entry_for_unknown_field_is_refused() -> None:
    data = json.loads(POLICY_PATH.read_text(encoding="utf-8"))
    data["fields"]["shoe_size"] = {"action": "keep", "why": "A made-up field for this test only."}
    with pytest.raises(PolicyError, match="shoe_size"):
        policy_from_data(data, spec=load_spec())


@pytest.mark.parametrize(
    ("field", "entry", "message"),
    [
        ("first_name", {"action": "keep", "why": "Trying to keep a name to see it refused."}, "cannot be kept"),
        ("event_description", {"action": "keep", "why": "Trying to keep free text."}, "cannot be kept"),
        (
            "postcode",
            {"action": "generalise", "method": "month", "why": "Wrong method for a postcode."},
            "does not apply",
        ),
        ("nhs_number", {"action": "pseudonymise", "why": "No namespace given here."}, "namespace"),
        ("gender", {"action": "keep", "why": ""}, "why"),
        ("gender", {"action": "shred", "why": "Not an action the loader knows."}, "action"),
    ],
)
def test_policy_entry_errors(field: str, entry: dict[str, str], message: str) -> None:
    data = json.loads(POLICY_PATH.read_text(encoding="utf-8"))
    data["fields"][field] = entry
    with pytest.raises(PolicyError, match=message):
        policy_from_data(data, spec=load_spec())


# ---- key ------------------------------------------------------------------------------------------------


def test_key_is_never_shown() -> None:
    key = PseudonymKey(KEY_A)
    for text in (repr(key), str(key), f"{key}", repr(_ps()), repr([key])):
        assert KEY_A.hex() not in text
        assert base64.b64encode(KEY_A).decode() not in text
    assert key.key_id == hashlib.sha256(KEY_A).hexdigest()[:8]
    assert key.key_id in repr(key)
    with pytest.raises(TypeError):
        pickle.dumps(key)
    with pytest.raises(TypeError):
        pickle.dumps(_ps())
    with pytest.raises(TypeError):
        copy.copy(key)


def test_key_text_hex_and_base64_decode_to_the_same_key() -> None:
    by_hex = PseudonymKey.from_text(KEY_A.hex() + "\n")
    by_b64 = PseudonymKey.from_text(base64.b64encode(KEY_A).decode())
    by_prefix = PseudonymKey.from_text("hex:" + KEY_A.hex().upper())
    assert by_hex.secret_bytes() == by_b64.secret_bytes() == by_prefix.secret_bytes() == KEY_A
    assert PseudonymKey.from_text(KEY_A.hex(), key_id="2026-q1").key_id == "2026-q1"


@pytest.mark.parametrize(
    ("text", "message"),
    [("", "empty"), ("   \n", "empty"), ("ab" * 31, "too short"), ("not a key!", "neither"), ("hex:zz", "neither")],
)
def test_bad_key_text_is_refused_without_echoing_it(text: str, message: str) -> None:
    with pytest.raises(PseudonymKeyError, match=message) as err:
        PseudonymKey.from_text(text)
    if text.strip():
        assert text.strip() not in str(err.value)


def test_key_file_missing(tmp_path: Path) -> None:
    with pytest.raises(PseudonymKeyError, match="does not exist"):
        PseudonymKey.from_file(tmp_path / "nope.key")


# ---- pseudonyms -----------------------------------------------------------------------------------------


def test_pseudonym_is_the_documented_hmac() -> None:
    expected = hmac.new(
        KEY_A,
        b"cld-pseudonym/v1" + b"9:E09000001" + b"4:nhse" + b"10:nhs_number" + b"0:" + b"9990000018",
        hashlib.sha256,
    ).hexdigest()[:PSEUDONYM_HEX_CHARS]
    assert hmac_message("E09000001", "nhse", Namespace.NHS_NUMBER, "", "9990000018").endswith(b"0:9990000018")
    assert _ps().pseudonym(Namespace.NHS_NUMBER, "9990000018") == expected
    assert _ps().pseudonymise(_record(nhs_number="9990000018"))["nhs_number_pseudo"] == expected
    assert len(expected) * 4 >= 128


def test_long_keys_follow_hmac_too() -> None:
    long_key = bytes(range(100))
    ps = _ps(key=long_key)
    expected = hmac.new(
        long_key, hmac_message("E09000001", "nhse", Namespace.NHS_NUMBER, "", "9990000018"), hashlib.sha256
    ).hexdigest()[:PSEUDONYM_HEX_CHARS]
    assert ps.pseudonym(Namespace.NHS_NUMBER, "9990000018") == expected


def test_pseudonyms_are_deterministic_and_separated_by_key_tenant_and_purpose() -> None:
    rec = _record(nhs_number="9990000018", la_person_unique_identifier="LAP-QX7")
    base = _ps().pseudonymise(rec)
    assert _ps().pseudonymise(rec) == base
    for other in (_ps(key=KEY_B), _ps(tenant="E09000002"), _ps(purpose="dhsc")):
        out = other.pseudonymise(rec)
        assert out["nhs_number_pseudo"] != base["nhs_number_pseudo"]
        assert out["la_person_unique_identifier_pseudo"] != base["la_person_unique_identifier_pseudo"]


def test_pseudonyms_are_stable_across_processes() -> None:
    code = (
        "from cld_pseudonymisation import *\n"
        "p = Pseudonymiser(load_policy(), PseudonymKey(bytes(range(32))), tenant='E09000001', purpose='nhse')\n"
        "print(p.pseudonym(Namespace.NHS_NUMBER, '9990000018'))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == _ps().pseudonym(Namespace.NHS_NUMBER, "9990000018")


def test_identifier_normalisation() -> None:
    ps = _ps()
    nhs = {ps.pseudonym(Namespace.NHS_NUMBER, v) for v in ("9990000018", "999 000 0018", " 999-000-0018 ")}
    assert len(nhs) == 1
    ids = {ps.pseudonym(Namespace.LA_PERSON, v) for v in ("ab 12", " AB  12 ", "Ab\t12")}
    assert len(ids) == 1
    assert ps.pseudonym(Namespace.LA_PERSON, "AB12") not in ids
    assert ps.pseudonym(Namespace.NHS_NUMBER, "unknown") is None
    assert ps.pseudonym(Namespace.NHS_NUMBER, None) is None


def test_namespaces_and_la_scope() -> None:
    ps = _ps()
    rec = _record(la_person_unique_identifier="LAP-1", adult_1_linked_person_id=" lap-1 ", event_reference="LAP-1")
    out = ps.pseudonymise(rec)
    # A carer's linked id links to the cared-for person's pseudonymised LA id ...
    assert out["adult_1_linked_person_id_pseudo"] == out["la_person_unique_identifier_pseudo"]
    # ... but an event reference with the same text is a different namespace.
    assert out["event_reference_pseudo"] != out["la_person_unique_identifier_pseudo"]
    # LA ids are LA-scoped (two LAs of a hub may both have person 'LAP-1'); NHS numbers are not.
    other_la = ps.pseudonymise(
        _record(la_code="E09000002", la_person_unique_identifier="LAP-1", nhs_number="9990000018")
    )
    same_la = ps.pseudonymise(_record(la_person_unique_identifier="LAP-1", nhs_number="9990000018"))
    assert other_la["la_person_unique_identifier_pseudo"] != same_la["la_person_unique_identifier_pseudo"]
    assert other_la["nhs_number_pseudo"] == same_la["nhs_number_pseudo"]
    # Without an LA code in the record the tenant is the scope: same pseudonym as when la_code == tenant.
    no_code = ps.pseudonymise(_record(la_code=None, la_person_unique_identifier="LAP-1"))
    assert no_code["la_person_unique_identifier_pseudo"] == same_la["la_person_unique_identifier_pseudo"]


@pytest.mark.parametrize("label", ["", "has space", "x" * 65, "semi;colon"])
def test_bad_tenant_or_purpose(label: str) -> None:
    with pytest.raises(PseudonymiserError):
        _ps(tenant=label)
    with pytest.raises(PseudonymiserError):
        _ps(purpose=label)


# ---- generalisation and the record ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dob", "band"),
    [
        ("31/03/1961", "65 to 74"),  # 65th birthday on the period end
        ("01/04/1961", "45 to 64"),  # one day short of 65
        ("1961-03-31", "65 to 74"),  # ISO dates too
        ("31/03/2008", "18 to 24"),
        ("01/04/2008", "Under 18"),
        ("29/02/1920", "95 and above"),
        ("01/01/2027", "Unknown"),  # born after the period end
        ("31/02/1950", "Unknown"),  # not a date
        ("1950", "Unknown"),
        (None, "Unknown"),
    ],
)
def test_date_of_birth_generalised(dob: str | None, band: str) -> None:
    out = _ps().pseudonymise(_record(date_of_birth=dob))
    assert out["age_band_period_end"] == band
    assert "date_of_birth" not in out
    parsed = parse_date(dob)
    if parsed and band != "Unknown":
        assert (out["birth_year"], out["birth_month"]) == (str(parsed[0]), str(parsed[1]))
    if parsed is None:
        assert out["birth_year"] is None
        assert out["birth_month"] is None


def test_age_bands_are_the_dhsc_bands() -> None:
    assert [age_band(a) for a in (0, 17, 18, 24, 25, 44, 45, 64, 65, 74, 75, 84, 85, 94, 95, 120, -1, None)] == [
        "Under 18", "Under 18", "18 to 24", "18 to 24", "25 to 44", "25 to 44", "45 to 64", "45 to 64",
        "65 to 74", "65 to 74", "75 to 84", "75 to 84", "85 to 94", "85 to 94", "95 and above", "95 and above",
        "Unknown", "Unknown",
    ]  # fmt: skip


def test_death_month_and_conversation_flag() -> None:
    out = _ps().pseudonymise(_record(date_of_death="07/02/2026", event_description="Phone CONVERSATION re Zorvinka"))
    assert out["death_month"] == "2026-02"
    assert out["conversation_flag"] == "Yes"
    assert "date_of_death" not in out
    assert "event_description" not in out
    out = _ps().pseudonymise(_record(date_of_death="bad", event_description="Visit"))
    assert out["death_month"] is None
    assert out["conversation_flag"] == "No"


@pytest.mark.parametrize(
    ("postcode", "sector", "district"),
    [
        ("XX1 4AB", "XX1 4", "XX1"),
        ("xx14ab", "XX1 4", "XX1"),
        ("ZY10 9QQ", "ZY10 9", "ZY10"),
        ("X1A 2BC", "X1A 2", "X1A"),
        ("ZY10", None, "ZY10"),
        ("not a postcode", None, None),
        (None, None, None),
    ],
)
def test_postcode_generalised(postcode: str | None, sector: str | None, district: str | None) -> None:
    out = _ps().pseudonymise(_record(postcode=postcode))
    assert (out["postcode_sector"], out["postcode_district"]) == (sector, district)
    assert "postcode" not in out
    assert postcode_parts(postcode)[:2] == (sector, district)


def _write_lookup(path: Path, header: str, rows: list[str]) -> Path:
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "header",
    ["pcd,pcds,dointr,lsoa21cd,msoa21cd", "PCDS,LSOA11,MSOA11", "postcode,lsoa21,msoa21"],
)
def test_postcode_lookup_adds_lsoa_and_msoa(tmp_path: Path, header: str) -> None:
    cols = header.lower().split(",")
    values = {"pcd": "XX1  4AB", "pcds": "XX1 4AB", "postcode": "XX1 4AB", "dointr": "199001"}

    def row(pc: str, lsoa: str, msoa: str) -> str:
        v = {**values, "pcds": pc, "postcode": pc, "pcd": pc}
        return ",".join(lsoa if c.startswith("lsoa") else msoa if c.startswith("msoa") else v[c] for c in cols)

    path = _write_lookup(
        tmp_path / "onspd.csv",
        header,
        [row("XX1 4AB", "E01999991", "E02999991"), row("XX1 4AD", "E01999992", "E02999991")],
    )
    lookup = PostcodeLookup.from_csv(path)
    assert len(lookup) == 2
    out = _ps(lookup=lookup).pseudonymise(_record(postcode="xx1 4ad"))
    assert (out["lsoa"], out["msoa"]) == ("E01999992", "E02999991")
    out = _ps(lookup=lookup).pseudonymise(_record(postcode="XX9 9ZZ"))
    assert (out["lsoa"], out["msoa"]) == (None, None)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("pcds,lat,long\nXX1 4AB,1,2\n", "no LSOA or MSOA"),
        ("lsoa21cd,msoa21cd\nE01,E02\n", "no postcode column"),
        ("pcds,lsoa21cd\nnot-a-pc,E01\n", "no usable postcodes"),
        ("", "no postcode column"),
    ],
)
def test_bad_lookup_files(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "lookup.csv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(LookupFileError, match=message):
        PostcodeLookup.from_csv(path)
    with pytest.raises(LookupFileError, match="does not exist"):
        PostcodeLookup.from_csv(tmp_path / "missing.csv")


def test_record_output_names_and_unknown_input_keys() -> None:
    ps = _ps()
    rec = _record(first_name="Zorvinka", gender="Female", nhs_number="9990000018")
    out = ps.pseudonymise(rec)
    assert tuple(sorted(out)) == tuple(sorted(ps.output_fields))
    assert out["gender"] == "Female"
    assert "first_name" not in out
    assert "nhs_number" not in out
    # A mapping that is not exactly the spec's fields takes the slow path, with the same result
    # and nothing copied that the policy does not name.
    slow = ps.pseudonymise({**rec, "secret_extra_column": "Zorvinka"})
    assert slow == out
    partial = ps.pseudonymise({"gender": "Female", "nhs_number": "9990000018", "reporting_period_end_date": None})
    assert partial["nhs_number_pseudo"] == out["nhs_number_pseudo"]
    assert set(partial) == set(out)


def test_qi_tuple_person_key_and_qi_names() -> None:
    ps = _ps()
    out = ps.pseudonymise(_record(gender="Male", postcode="XX1 4AB", la_person_unique_identifier="LAP-9"))
    assert qi_tuple(out, ("gender", "postcode_sector", "ethnicity")) == ("Male", "XX1 4", None)
    assert qi_getter(("gender", "postcode_sector", "ethnicity"))(out) == ("Male", "XX1 4", None)
    assert qi_getter(("gender",))(out) == ("Male",)
    assert person_key(out) == "la:" + str(out["la_person_unique_identifier_pseudo"])
    only_nhs = ps.pseudonymise(_record(nhs_number="9990000018"))
    assert person_key(only_nhs) == "nhs:" + str(only_nhs["nhs_number_pseudo"])
    assert person_key(ps.pseudonymise(_record())) is None
    assert [row_order({"event_start_date": v}) for v in ("05/11/2025", "2025-11-05", "5/11/2025", None)] == [
        20251105,
        20251105,
        0,
        0,
    ]
    assert ps.check_qi_names(["gender", "lsoa"]) == ("gender", "lsoa")
    for bad in (["postcode"], ["nhs_number_pseudo"], [], ["gender", "gender"]):
        with pytest.raises(PseudonymiserError):
            ps.check_qi_names(bad)
