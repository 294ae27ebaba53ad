"""Re-identification risk figures, checked against values worked out by hand on small synthetic datasets."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cld_pseudonymisation import DEFAULT_QI, RiskAccumulator, measure_risk

QI = DEFAULT_QI  # age band, gender, ethnicity, postcode sector, primary support reason
MH = "Mental Health Support"
M_IRISH = ("65 to 74", "Male", "White: Irish", "XX1 4", MH)
F_IRISH = ("65 to 74", "Female", "White: Irish", "XX1 4", MH)
F_INDIAN = ("65 to 74", "Female", "Asian or Asian British: Indian", "XX1 4", MH)


def _unique_dataset() -> list[tuple[str | None, tuple[str | None, ...], int]]:
    """6 people: 3 x M_IRISH, 2 x F_IRISH, 1 x F_INDIAN (after taking each person's latest row)."""
    rows: list[tuple[str | None, tuple[str | None, ...], int]] = []
    for p in ("p1", "p2", "p3"):
        rows += [(p, M_IRISH, 20250101), (p, M_IRISH, 20250201), (p, M_IRISH, 20250301)]  # many rows, one person
    rows += [("p4", F_IRISH, 20250101), ("p5", F_IRISH, 20250101)]
    # p6's latest row (June) comes first in the file; an older row looked like F_IRISH and must not count.
    rows += [("p6", F_INDIAN, 20250601), ("p6", F_IRISH, 20250101)]
    rows += [(None, F_IRISH, 20250101)]  # a row with no person identifier
    return rows


def test_dataset_with_a_unique_person() -> None:
    f = measure_risk(_unique_dataset(), qi=QI, k_threshold=5)
    assert f.rows == 14
    assert f.rows_without_person == 1
    assert f.people == 6
    assert f.classes == 3
    assert f.min_k == 1
    assert f.uniques == 1
    assert f.unique_share == pytest.approx(1 / 6)
    assert f.people_below_k == 6  # classes of 3, 2 and 1, all below 5
    assert f.share_below_k == 1.0
    # prosecutor risk per person: 1/3 (x3), 1/2 (x2), 1/1 -> mean (1 + 1 + 1) / 6
    assert f.average_prosecutor_risk == pytest.approx(0.5)
    assert f.max_prosecutor_risk == 1.0
    assert f.class_size_histogram == {3: 1, 2: 1, 1: 1}

    by = {(o.qi, o.change): o for o in f.options}
    # Dropping gender: {M_IRISH, F_IRISH} merge into 5, F_INDIAN stays alone.
    g = by[("gender", "drop")]
    assert (g.uniques_after, g.uniques_removed, g.people_below_k_after, g.min_k_after) == (1, 0, 1, 1)
    # Dropping ethnicity: Male 3, Female 3 -> nobody unique but everyone still below 5.
    e = by[("ethnicity", "drop")]
    assert (e.uniques_after, e.uniques_removed, e.people_below_k_after, e.min_k_after) == (0, 1, 6, 3)
    # Broad ethnic group still separates 'white' from 'asian or asian british'.
    eg = by[("ethnicity", "generalise")]
    assert (eg.uniques_after, eg.people_below_k_after) == (1, 6)
    # Options are ranked by people left below k: dropping gender helps most.
    assert (f.options[0].qi, f.options[0].change) == ("gender", "drop")
    assert f.below_threshold
    text = " ".join(f.warnings)
    assert "6 of 6 people" in text
    assert "1 (16.7%) are unique" in text
    assert "drop gender" in text
    assert "neither an LA person identifier nor an NHS number" in text


def test_exactly_five_anonymous_dataset() -> None:
    rows = []
    for i in range(5):
        rows += [(f"m{i}", M_IRISH, 20250101), (f"m{i}", M_IRISH, 20250202)]
        rows += [(f"f{i}", F_IRISH, 20250101), (f"f{i}", F_IRISH, 20250303)]
    f = measure_risk(rows, qi=QI, k_threshold=5)
    assert (f.people, f.classes, f.min_k, f.uniques, f.people_below_k) == (10, 2, 5, 0, 0)
    assert f.average_prosecutor_risk == pytest.approx(0.2)
    assert f.max_prosecutor_risk == pytest.approx(0.2)
    assert not f.below_threshold
    assert f.warnings == ()
    # The same data fails a stricter threshold.
    strict = measure_risk(rows, qi=QI, k_threshold=6)
    assert strict.below_threshold
    assert strict.people_below_k == 10
    assert any("fewer than 5 other people" in w for w in strict.warnings)


def test_warning_names_the_generalisation_that_helps() -> None:
    # Five people alike except the postcode sector: everyone is unique; the district makes them 5-anonymous.
    rows = [(f"p{i}", ("45 to 64", "Male", "White: Irish", f"XX1 {i}", MH)) for i in range(5)]
    f = measure_risk(rows, qi=QI)
    assert f.uniques == 5
    assert f.min_k == 1
    best = f.options[0]
    assert (best.qi, best.change, best.people_below_k_after, best.min_k_after) == (
        "postcode_sector",
        "generalise",
        0,
        5,
    )
    assert any("postcode sector -> postcode district" in w for w in f.warnings)


def test_age_band_and_psr_generalisations() -> None:
    rows = [
        ("a", ("18 to 24", "Male", "x", "XX1 1", "Physical Support: Access & mobility only")),
        ("b", ("45 to 64", "Male", "x", "XX1 1", "Physical Support: Personal care support")),
    ]
    f = measure_risk(rows, qi=QI, k_threshold=2)
    by = {(o.qi, o.change): o for o in f.options}
    assert by[("age_band_period_end", "generalise")].uniques_after == 2  # PSR still differs
    assert by[("primary_support_reason", "generalise")].uniques_after == 2  # age band still differs
    both = measure_risk([(k, (v[0], v[1], v[2], v[3], "Physical Support")) for k, v in rows], qi=QI, k_threshold=2)
    assert {(o.qi, o.change): o for o in both.options}[("age_band_period_end", "generalise")].uniques_after == 0


def test_accumulator_replaces_a_persons_tuple_and_summary_tracks_it() -> None:
    acc = RiskAccumulator(("gender",), k_threshold=2)
    acc.add("p1", ("Male",))
    acc.add("p2", ("Male",))
    assert (acc.summary().min_k, acc.summary().uniques, acc.summary().classes) == (2, 0, 1)
    acc.add("p2", ("Female",), at=5)
    s = acc.summary()
    assert (s.people, s.classes, s.min_k, s.uniques) == (2, 2, 1, 2)
    acc.add("p2", ("Male",), at=1)  # older than the stored row: ignored
    assert acc.summary().uniques == 2
    acc.add("p2", ("Male",), at=5)  # same date, later in the stream: wins
    assert acc.summary().uniques == 0
    assert len(acc) == 2
    assert acc.rows == 5


def test_empty_accumulator() -> None:
    f = RiskAccumulator().figures()
    assert (f.people, f.min_k, f.uniques, f.average_prosecutor_risk, f.max_prosecutor_risk) == (0, 0, 0, 0.0, 0.0)
    assert not f.below_threshold
    assert any("No people" in w for w in f.warnings)


def test_accumulator_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="quasi-identifier"):
        RiskAccumulator(())
    with pytest.raises(ValueError, match="threshold"):
        RiskAccumulator(QI, k_threshold=1)
    with pytest.raises(ValueError, match="expected 5"):
        RiskAccumulator(QI).add("p", ("Male",))


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["p1", "p2", "p3", "p4", "p5", "p6"]),
            st.sampled_from(["a", "b", "c", None]),
            st.sampled_from(["x", "y"]),
            st.integers(0, 3),
        ),
        max_size=40,
    )
)
def test_incremental_figures_equal_a_recount_from_scratch(rows: list[tuple[str, str | None, str, int]]) -> None:
    acc = RiskAccumulator(("q1", "q2"), k_threshold=3)
    latest: dict[str, tuple[int, tuple[str | None, str]]] = {}
    for person, q1, q2, at in rows:
        acc.add(person, (q1, q2), at=at)
        if person not in latest or at >= latest[person][0]:
            latest[person] = (at, (q1, q2))
    sizes = Counter(t for _, t in latest.values())
    per_person_k = [sizes[t] for _, t in latest.values()]
    f = acc.figures()
    assert f.people == len(latest)
    assert f.classes == len(sizes)
    assert f.min_k == (min(sizes.values()) if sizes else 0)
    assert f.uniques == sum(1 for n in sizes.values() if n == 1)
    assert f.people_below_k == sum(1 for k in per_person_k if k < 3)
    assert f.average_prosecutor_risk == pytest.approx(sum(1 / k for k in per_person_k) / len(latest) if latest else 0)
    if latest:
        drop_q2 = Counter(t[0] for _, t in latest.values())
        option = next(o for o in f.options if (o.qi, o.change) == ("q2", "drop"))
        assert option.uniques_after == sum(1 for n in drop_q2.values() if n == 1)
