"""The columnar pseudonymiser and risk figures against the per-record reference (issue 11 item 2).

A hypothesis differential test: generated batches of records (every policy field; blanks, "", whitespace of
every kind, Unicode letters and digits, dates real and impossible in both forms, postcode shapes, several LA
codes in one batch) give, column for column, exactly what ``cld_pseudonymisation.reference`` (the per-record
code the frames replaced) gives; the risk figures by group-by equal ``RiskAccumulator``'s over the same rows,
whether the rows come in one frame or several; the service's per-person accumulator update equals adding every
row; ``cld preview``'s CSV text equals ``csv.writer``'s. Synthetic values only (NHS numbers from the 999 range).
"""

from __future__ import annotations

import csv
import io
from typing import Any

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cld_cli.cmd_preview import KEY_ID_COLUMN, csv_rows
from cld_pseudonymisation import PostcodeLookup, PseudonymKey, RiskAccumulator, load_policy, person_key, row_order
from cld_pseudonymisation.columnar import AT, PERSON, FrameRisk, latest_per_person, person_rows
from cld_pseudonymisation.pseudonymiser import Pseudonymiser, qi_tuple
from cld_pseudonymisation.reference import ReferencePseudonymiser
from cld_pseudonymisation.risk import DEFAULT_QI

POLICY = load_policy()
FIELDS = tuple(f.name for f in POLICY.fields)
KEY = PseudonymKey(bytes(range(32)))
LOOKUP = PostcodeLookup([("XX1 4AB", "E01000001", "E02000001"), ("ZY12 3CD", "E01000002", None)])

_WS = st.sampled_from([" ", "  ", "\t", "\x0b", "\x1c", "\x1f", "\u00a0", "\u2003", "\u3000", "\n"])
_ODD = st.sampled_from(["ſ", "ß", "ı", "İ", "K", "ﬀ", "é", "٣", "１", "Σ", "ǅ", "\u0307"])


def _mix(*parts: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.lists(st.one_of(*parts), max_size=6).map("".join)


_dates = st.one_of(
    st.builds(
        lambda d, m, y: f"{d:02d}/{m:02d}/{y:04d}",
        st.integers(0, 32),
        st.integers(0, 13),
        st.sampled_from([0, 1, 1899, 1900, 1952, 2000, 2004, 2023, 2024, 2025, 2026, 2100, 9999]),
    ),
    st.builds(
        lambda d, m, y: f"{y:04d}-{m:02d}-{d:02d}",
        st.integers(0, 32),
        st.integers(0, 13),
        st.sampled_from([0, 1900, 1960, 2000, 2024, 2025]),
    ),
    st.sampled_from(["29/02/2024", "29/02/2023", "29/02/1900", "29/02/2000", "31/04/2025", "5/11/2025"]),
    st.sampled_from(["０１/０１/２０００", "٠١/٠١/٢٠٠٠", "01/01/2000 ", " 01/01/2000", "01-01-2000", "2000/01/01"]),
    st.sampled_from(["\u00a001/01/2000", "2000-01-01\x1c", "\u300001/01/2000\u2003", "\t2024-02-29\n"]),
)
_postcodes = st.one_of(
    st.sampled_from(["XX1 4AB", "xx1 4ab", "XX14AB", "ZY12 3CD", "XX1", "zy12", "GIR 0AA", "XX1  4AB", "X 1 4 A B"]),
    st.sampled_from(["ſW1A 1AA", "ﬀ1 4AB", "XX1 4Aß", "XX1\u00a04AB", "XX1\t4AB", "١XX1 4AB", "XX99 9ZZ"]),
    _mix(st.sampled_from(["X", "Z", "Y", "1", "4", "A", "B", " "]), _ODD),
)
_identifiers = st.one_of(
    st.sampled_from(["LAP-1", "lap-1", " LAP-1 ", "LAP\t-1", "LAP  1", "ﬀ-1", "straße", "ı-1", "  ", "\x1c"]),
    _mix(st.sampled_from(["P", "p", "1", "2", "-"]), _WS, _ODD),
)
_nhs = st.one_of(
    st.sampled_from(["9990000018", "999 000 0018", "999-000-0018", "９９９0000018", "٩٩٩0000018", "abc", "  "]),
    _mix(st.sampled_from(["9", "0", "1", "8"]), _WS, _ODD),
)
_text = st.one_of(
    st.sampled_from(["Phone conversation", "CONVERSATION", "conversatİon", "converſation", "Visit", "KONVERSATION"]),
    st.text(max_size=12),
)
_la = st.sampled_from(["318", " 318 ", "319", "e09000001", "ǅ1", "", "  "])


def _value(name: str) -> st.SearchStrategy[str]:
    if name.startswith(("date_of_", "event_start", "event_end", "reporting_period", "service_")) or name.endswith(
        "_date"
    ):
        return _dates
    if name == "postcode":
        return _postcodes
    if name == "nhs_number":
        return _nhs
    if name == "la_code":
        return _la
    if name.endswith(("_identifier", "_person_id", "reference")):
        return _identifiers
    return _text


def _record() -> st.SearchStrategy[dict[str, str | None]]:
    return st.fixed_dictionaries({n: st.one_of(st.none(), st.just(""), _value(n)) for n in FIELDS})


_batches = st.lists(_record(), min_size=0, max_size=25)


def _pair(lookup: PostcodeLookup | None) -> tuple[Pseudonymiser, ReferencePseudonymiser]:
    kw: dict[str, Any] = {"tenant": "318", "purpose": "preview", "lookup": lookup}
    return Pseudonymiser(POLICY, KEY, **kw), ReferencePseudonymiser(POLICY, KEY, **kw)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_batches, st.booleans())
def test_frames_pseudonymise_exactly_as_the_per_record_reference(
    records: list[dict[str, str | None]], with_lookup: bool
) -> None:
    ps, ref = _pair(LOOKUP if with_lookup else None)
    got = ps.pseudonymise_frame(ps.records_frame(records))
    assert got.columns == list(ps.output_fields)
    want = [ref.pseudonymise(r) for r in records]
    assert got.to_dicts() == [{n: w[n] for n in ps.output_fields} for w in want]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_batches, st.integers(1, 4), st.integers(2, 6), st.sampled_from([DEFAULT_QI, ("gender",), ("postcode_sector",)]))
def test_risk_by_group_by_equals_the_accumulator(
    records: list[dict[str, str | None]], parts: int, k: int, qi: tuple[str, ...]
) -> None:
    ps, ref = _pair(None)
    # few people, so classes and ties in the row order really occur
    for i, r in enumerate(records):
        r["la_person_unique_identifier"] = None if i % 7 == 3 else f"P{i % 5}"
        r["event_start_date"] = [None, "01/01/2025", "2025-01-01", "02/01/2025", "99/99/2025", " 03/01/2025"][i % 6]
    want_acc = RiskAccumulator(qi, k_threshold=k)
    for r in map(ref.pseudonymise, records):
        want_acc.add(person_key(r), qi_tuple(r, qi), at=row_order(r))
    frame_risk = FrameRisk(qi, k_threshold=k)
    size = max(1, -(-len(records) // parts))
    for start in range(0, max(len(records), 1), size):
        frame_risk.add_frame(ps.pseudonymise_frame(ps.records_frame(records[start : start + size])))
    assert frame_risk.figures() == want_acc.figures()

    # the service's path: each batch reduced to one row per person, then one accumulator update per person
    service_acc = RiskAccumulator(qi, k_threshold=k)
    for start in range(0, len(records), size):
        rows = person_rows(ps.pseudonymise_frame(ps.records_frame(records[start : start + size])), qi)
        with_person = rows.filter(pl.col(PERSON).is_not_null())
        latest = latest_per_person(with_person)
        service_acc.add_people(
            zip(latest[PERSON].to_list(), zip(*(latest[q].to_list() for q in qi)), latest[AT].to_list()),  # noqa: B905
            rows=rows.height,
            rows_without_person=rows.height - with_person.height,
        )
    assert service_acc.figures() == want_acc.figures()
    assert service_acc.summary() == want_acc.summary()


@settings(max_examples=100, deadline=None)
@given(st.lists(st.lists(st.one_of(st.none(), st.text(max_size=8)), min_size=3, max_size=3), max_size=10))
def test_preview_csv_text_equals_csv_writer(rows: list[list[str | None]]) -> None:
    columns = ("a", "b", "c")
    frame = pl.DataFrame(rows, schema=dict.fromkeys(columns, pl.String), orient="row")
    want = io.StringIO(newline="")
    writer = csv.writer(want)
    for row in rows:
        writer.writerow((*row, "k1"))
    assert csv_rows(frame, columns, "k1") == want.getvalue()
    assert KEY_ID_COLUMN == "pseudonym_key_id"


def test_a_single_record_is_a_one_row_frame() -> None:
    ps, ref = _pair(LOOKUP)
    record = dict.fromkeys(FIELDS, None) | {
        "la_code": "318",
        "nhs_number": "999 000 0018",
        "la_person_unique_identifier": " lap-7 ",
        "date_of_birth": "29/02/1952",
        "reporting_period_end_date": "31/03/2026",
        "postcode": "xx1 4ab",
        "event_description": "Phone conversation",
    }
    out = ps.pseudonymise(record)
    assert out == {n: ref.pseudonymise(record)[n] for n in ps.output_fields}
    assert out["age_band_period_end"] == "65 to 74"
    assert out["postcode_sector"] == "XX1 4"
    assert out["lsoa"] == "E01000001"
    assert out["conversation_flag"] == "Yes"


def test_py_whitespace_is_what_str_strip_removes() -> None:
    from cld_pseudonymisation.columnar import PY_WHITESPACE

    assert set(PY_WHITESPACE) == {chr(c) for c in range(0x110000) if chr(c).isspace()}
