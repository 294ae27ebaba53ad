"""No direct identifier from the input survives into any output of ``cld preview`` or any log.

The fixture is synthetic: NHS numbers from the 999 range with valid Modulus 11 check digits, made-up names and
identifiers, postcodes in made-up areas. Every input value of every identifying field is searched for, in
several spellings, in every output file, in stdout/stderr and in captured logs.
"""

from __future__ import annotations

import csv
import json
import logging
import random
from pathlib import Path

import pytest
from nhs_number.validate import is_valid as nhs_number_is_valid
from typer.testing import CliRunner

from cld_cli.main import app
from cld_pseudonymisation import Namespace, Pseudonymiser, PseudonymKey, load_policy
from cld_schemas.csvfile import iter_records
from cld_schemas.spec import load_spec

KEY_HEX = bytes(range(100, 132)).hex()
IDENTIFYING = (
    "nhs_number", "la_person_unique_identifier", "first_name", "last_name", "date_of_birth", "postcode",
    "adult_1_linked_person_id", "adult_2_linked_person_id", "adult_3_linked_person_id", "event_description",
    "event_reference", "gp_practice_name", "provider_cqc_location_name",
)  # fmt: skip


def synthetic_nhs_number(rng: random.Random) -> str:
    while True:
        body = "999" + f"{rng.randrange(1_000_000):06d}"
        check = 11 - sum(int(d) * w for d, w in zip(body, range(10, 1, -1), strict=True)) % 11
        check = 0 if check == 11 else check
        if check != 10:
            return body + str(check)


def _made_up_word(rng: random.Random, n: int) -> str:
    return "Zq" + "".join(rng.choice("bcdfghjklmnpqrstvwxz") + rng.choice("aeiouy") for _ in range(n))


def write_fixture(path: Path, people: int = 40, seed: int = 11) -> list[dict[str, str]]:
    rng = random.Random(seed)
    persons = []
    for i in range(people):
        nhs = synthetic_nhs_number(rng)
        persons.append(
            {
                "NHS Number": nhs if i % 3 else f"{nhs[:3]} {nhs[3:6]} {nhs[6:]}",  # some spaced
                "LA Person Unique Identifier": f"LAP-{_made_up_word(rng, 2).upper()}{i}",
                "First Name": _made_up_word(rng, 3),
                "Last Name": _made_up_word(rng, 4),
                "Date of Birth": f"{rng.randrange(1, 29):02d}/{rng.randrange(1, 13):02d}/{rng.randrange(1930, 2000)}",
                "Postcode": f"XX{rng.randrange(1, 9)} {rng.randrange(10)}{rng.choice('ABD')}{rng.choice('HJL')}"
                if i % 2
                else f"ZY{rng.randrange(10, 20)}{rng.randrange(10)}{rng.choice('EFG')}{rng.choice('NPQ')}",
                "Gender": rng.choice(["Male", "Female"]),
                "Ethnicity": rng.choice(["White: Irish", "Asian or Asian British: Indian", "White: Roma"]),
                "Primary Support Reason": rng.choice(["Mental Health Support", "Learning Disability Support"]),
                "GP Practice Name": f"{_made_up_word(rng, 2)} Surgery",
            }
        )
    rows = []
    for i in range(people * 3):
        p = persons[i % people]
        linked = [persons[(i + k) % people]["LA Person Unique Identifier"] for k in (1, 2, 3)]
        rows.append(
            {
                **p,
                "LA Code": "E09000001",
                "Reporting Period Start Date": "01/04/2025",
                "Reporting Period End Date": "31/03/2026",
                "Client Type": "Unpaid carer" if i % 4 == 0 else "Service user",
                "Event Type": "Service",
                "Event Reference": f"EVR-{_made_up_word(rng, 2)}-{i}",
                "Event Start Date": f"{rng.randrange(1, 29):02d}/{rng.randrange(1, 13):02d}/2025",
                "Event Description": f"Conversation with {p['First Name']} at home, ref {_made_up_word(rng, 3)}",
                "Adult 1 Linked Person_ID": linked[0] if i % 4 == 0 else "",
                "Adult 2 Linked Person_ID": linked[1] if i % 8 == 0 else "",
                "Adult 3 Linked Person_ID": linked[2] if i % 16 == 0 else "",
                "Provider CQC Location Name": f"{_made_up_word(rng, 3)} Care Home",
                "Date of Death": "14/02/2026" if i == 5 else "",
            }
        )
    headers = [f.header for f in load_spec().fields if f.in_file is not False]
    with path.open("w", encoding="utf-8", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=headers)
        w.writeheader()
        for r in rows:
            w.writerow(r)
    return rows


def spellings(header: str, value: str) -> set[str]:
    """The forms in which a value could leak."""
    v = value.strip()
    if not v:
        return set()
    out = {v}
    if header == "NHS Number":
        digits = "".join(c for c in v if c.isdigit())
        out |= {digits, f"{digits[:3]} {digits[3:6]} {digits[6:]}", f"{digits[:3]}-{digits[3:6]}-{digits[6:]}"}
    elif header == "Date of Birth":
        d, m, y = v.split("/")
        out |= {f"{d}/{m}/{y}", f"{y}-{m}-{d}", f"{d}{m}{y}", f"{y}{m}{d}", f"{d}-{m}-{y}", f"{d}.{m}.{y}",
                f"{int(d)}/{int(m)}/{y}", f"{y}/{m}/{d}"}  # fmt: skip
    elif header == "Postcode":
        compact = v.replace(" ", "")
        out |= {compact, f"{compact[:-3]} {compact[-3:]}"}
    return {s.lower() for s in out}


def leaked(rows: list[dict[str, str]], text: str) -> list[str]:
    """Which identifying field leaked, by header (never the value itself, to keep test output clean)."""
    haystack = text.lower()
    headers = {f.name: f.header for f in load_spec().fields}
    found = []
    for r in rows:
        for name in IDENTIFYING:
            header = headers[name]
            if any(s in haystack for s in spellings(header, r.get(header, ""))):
                found.append(header)
    return sorted(set(found))


def test_no_identifier_reaches_any_output_or_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "la_file.csv"
    rows = write_fixture(src)
    # The scanner works: it finds every identifying field in the input itself.
    expected = sorted({load_spec().by_name()[n].header for n in IDENTIFYING})
    assert leaked(rows, src.read_text(encoding="utf-8")) == expected

    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("CLD_PSEUDO_KEY", KEY_HEX)
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["preview", str(src), "--out", str(out), "--k-threshold", "5"])
    assert result.exit_code == 0, result.output
    files = sorted(out.iterdir())
    assert [f.name for f in files] == ["pseudonymised.csv", "report.md", "risk.json"]
    texts = {f.name: f.read_text(encoding="utf-8") for f in files}
    texts["stdout+stderr"] = result.output
    texts["logs"] = "\n".join(r.getMessage() for r in caplog.records)
    # The domain API's output (what the Kafka service will publish) for every row, not only the CSV columns.
    ps = Pseudonymiser(load_policy(), PseudonymKey.from_text(KEY_HEX), tenant="E09000001", purpose="preview")
    with src.open(encoding="utf-8", newline="") as fh:
        _header, records = iter_records(fh)
        texts["domain records"] = "\n".join(json.dumps(ps.pseudonymise(r)) for r in records)
    assert texts["domain records"].count("\n") == len(rows) - 1
    for name, text in texts.items():
        assert leaked(rows, text) == [], name
        assert KEY_HEX not in text, name

    # And the pseudonymised file is really there: one row per input row, pseudonyms that link.
    with (out / "pseudonymised.csv").open(encoding="utf-8", newline="") as fh:
        produced = list(csv.DictReader(fh))
    assert len(produced) == len(rows)
    first = produced[0]
    assert first["la_person_unique_identifier_pseudo"] == ps.pseudonym(
        Namespace.LA_PERSON, rows[0]["LA Person Unique Identifier"], la_code="E09000001"
    )
    assert first["adult_1_linked_person_id_pseudo"] == produced[1]["la_person_unique_identifier_pseudo"]
    assert first["pseudonym_key_id"] == ps.key_id
    assert any(r["death_month"] == "2026-02" for r in produced)
    assert {r["conversation_flag"] for r in produced} == {"Yes"}


def test_fixture_nhs_numbers_are_valid_synthetic_numbers(tmp_path: Path) -> None:
    rows = write_fixture(tmp_path / "f.csv", people=10)
    for r in rows:
        digits = r["NHS Number"].replace(" ", "")
        assert digits.startswith("999")
        assert nhs_number_is_valid(digits)
