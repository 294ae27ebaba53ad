"""The synthetic CLD generator (``cld_synth.generator``) and the ``cld generate`` command.

Rows must be clean against the validator, in scope for the reporting period, reproducible from the seed and made of
synthetic identifiers only.
"""

from __future__ import annotations

import csv
import itertools
import json
from collections import Counter
from datetime import date
from functools import cache
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from cld_cli import cmd_generate
from cld_schemas.spec import Release, load_spec
from cld_synth import generator as synth
from cld_validation.rules import nhs_check_digit_ok, validate_record

PERIOD_END = date(2026, 3, 31)
RP_START, RP_END = date(2025, 4, 1), date(2026, 3, 31)
EVENT_GROUPS = {"event", "request", "assessment", "service", "review", "cost"}
CARER_FIELDS = (
    "total_hrs_caring_per_week",
    "no_of_adults_being_cared_for",
    "adult_1_linked_person_id",
    "adult_2_linked_person_id",
    "adult_3_linked_person_id",
)


@cache
def rows_of(release: Release, people: int = 1500, seed: int = 11) -> tuple[synth.Row, ...]:
    return tuple(
        row for row, _ in synth.generate_rows(people=people, seed=seed, period_end=PERIOD_END, release=release)
    )


def d(value: str | None) -> date:
    assert value is not None
    day, month, year = value.split("/")
    return date(int(year), int(month), int(day))


@cache
def keys_of(release: Release) -> dict[str, dict[str, str | None]]:
    pools = synth.CodePools(load_spec(), release).pools
    return {name: {pv.value: pv.key for pv in values} for name, values in pools.items()}


def key(field: str, value: str | None, release: Release) -> str | None:
    return keys_of(release)[field].get(value) if value is not None else None


@pytest.mark.parametrize("release", list(Release))
def test_clean_rows_have_no_failures(release: Release) -> None:
    rows = rows_of(release)
    assert len(rows) > 2500
    failures = Counter((f.header, f.rule) for row in rows for f in validate_record(row, release=release).findings)
    assert failures == Counter()


@pytest.mark.parametrize("release", list(Release))
def test_file_has_every_kind_of_person_and_event(release: Release) -> None:
    rows = rows_of(release)
    clients = Counter(key("client_type", r["client_type"], release) for r in rows)
    events = Counter(key("event_type", r["event_type"], release) for r in rows)
    assert set(clients) == {"service_user", "carer", "carer_known_by_association"}
    assert {"request", "assessment", "service", "review"} <= set(events)
    services = [r for r in rows if key("event_type", r["event_type"], release) == "service"]
    assert any(r["event_end_date"] is None for r in services), "some services are still open"
    assert any(r["event_end_date"] is not None for r in services), "some services have ended"
    assert any(r["date_of_death"] for r in rows)
    assert any(key("assessment_type", r["assessment_type"], release) == "financial" for r in rows)
    assert len({r["la_person_unique_identifier"] for r in rows}) == 1500


@pytest.mark.parametrize("release", list(Release))
def test_every_row_is_in_scope_for_the_reporting_period(release: Release) -> None:
    for r in rows_of(release):
        assert (r["reporting_period_start_date"], r["reporting_period_end_date"]) == ("01/04/2025", "31/03/2026")
        assert r["la_code"] == "318"
        dob = d(r["date_of_birth"])
        age = RP_END.year - dob.year - ((RP_END.month, RP_END.day) < (dob.month, dob.day))
        assert 18 <= age <= 110
        dod = d(r["date_of_death"]) if r["date_of_death"] else None
        if dod is not None:
            assert dob < dod <= RP_END
        event = key("event_type", r["event_type"], release)
        if event is None:
            continue
        start = d(r["event_start_date"])
        end = d(r["event_end_date"]) if r["event_end_date"] else None
        if end is not None:
            assert end >= start
        if dod is not None:
            assert end is not None, "every event of someone who died has an end date"
            assert start <= end <= dod
        if event == "service":
            assert start <= RP_END
            assert end is None or end >= RP_START
        else:
            assert end is not None
            assert RP_START <= end <= RP_END


def test_most_people_are_adults_and_some_are_over_65() -> None:
    ages = []
    for r in rows_of(Release.R2):
        dob = d(r["date_of_birth"])
        ages.append(RP_END.year - dob.year - ((RP_END.month, RP_END.day) < (dob.month, dob.day)))
    assert min(ages) >= 18
    assert 0.3 < sum(a >= 65 for a in ages) / len(ages) < 0.9


@pytest.mark.parametrize("release", list(Release))
def test_nhs_numbers_are_synthetic_valid_and_one_per_person(release: Release) -> None:
    per_person: dict[str, set[str | None]] = {}
    for r in rows_of(release):
        nhs = r["nhs_number"]
        assert nhs is not None
        assert len(nhs) == 10
        assert nhs.startswith("999")
        assert nhs_check_digit_ok(nhs)
        per_person.setdefault(r["la_person_unique_identifier"] or "", set()).add(nhs)
    assert all(len(v) == 1 for v in per_person.values())
    assert len({next(iter(v)) for v in per_person.values()}) == len(per_person)


@pytest.mark.parametrize("release", list(Release))
def test_carer_known_by_association_rows_have_no_event_fields(release: Release) -> None:
    event_fields = [f.name for f in load_spec().fields if f.group in EVENT_GROUPS]
    ckba = [
        r for r in rows_of(release) if key("client_type", r["client_type"], release) == "carer_known_by_association"
    ]
    assert ckba
    for r in ckba:
        assert {n: r[n] for n in event_fields if r[n]} == {}
        assert r["adult_1_linked_person_id"]


@pytest.mark.parametrize("release", list(Release))
def test_linked_person_ids_point_at_earlier_service_users(release: Release) -> None:
    seen_service_users: set[str | None] = set()
    linked = 0
    for r in rows_of(release):
        client = key("client_type", r["client_type"], release)
        if client == "service_user":
            seen_service_users.add(r["la_person_unique_identifier"])
            assert not any(r[n] for n in CARER_FIELDS), "no carer fields on service user rows"
            continue
        ids = [r[n] for n in CARER_FIELDS[2:] if r[n]]
        assert ids, "every carer links at least one cared-for adult"
        assert len(set(ids)) == len(ids)
        assert set(ids) <= seen_service_users
        assert r["no_of_adults_being_cared_for"] in (None, str(len(ids)))
        linked += len(ids)
    assert linked > 100


def test_same_seed_same_rows_and_another_seed_other_rows() -> None:
    def run(seed: int) -> list[tuple[synth.Row, list[synth.InjectedError]]]:
        return list(
            synth.generate_rows(people=300, seed=seed, period_end=PERIOD_END, release=Release.R2, error_rate=0.1)
        )

    assert run(5) == run(5)
    assert [r for r, _ in run(5)] != [r for r, _ in run(6)]


def test_generation_is_lazy() -> None:
    """Rows stream: asking for a billion people costs nothing until the rows are read."""
    rows = synth.generate_rows(people=10**9, seed=1, period_end=PERIOD_END)
    first = list(itertools.islice(rows, 5))
    assert len(first) == 5


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="la_code"):
        next(synth.generate_rows(people=1, seed=1, period_end=PERIOD_END, la_code="31"))
    with pytest.raises(ValueError, match="error_rate"):
        next(synth.generate_rows(people=1, seed=1, period_end=PERIOD_END, error_rate=1.5))


def test_code_pools_follow_list_completeness() -> None:
    spec = load_spec()
    r2 = synth.CodePools(spec, Release.R2)
    psr = {pv.value: pv for pv in r2.values("primary_support_reason")}
    # Partial R2 list: its own values, plus R1 values whose meaning R2 does not word differently (unchecked).
    assert psr["Social support: Support to unpaid carer"].source == "list"
    assert psr["Learning Disability Support"].source == "other_release"
    assert "Social Support: Support to Carer" not in psr, "an R1 wording of a meaning R2 words differently"
    # Complete lists: only the release's own values.
    assert {pv.source for pv in r2.values("ethnicity")} == {"list"}
    # Unknown in both releases but with candidates: the candidates, no key.
    assert {pv.source for pv in r2.values("cost_frequency_unit_type")} == {"unverified"}
    # Nothing known anywhere: a placeholder only where the field can be mandatory, else nothing.
    assert [pv.value for pv in r2.values("method_of_assessment")] == [synth.PLACEHOLDER_CODE]
    assert r2.values("dementia") == ()
    for release in Release:
        pools = synth.CodePools(spec, release)
        placeholders = [n for n, vs in pools.pools.items() if any(v.source == "placeholder" for v in vs)]
        assert placeholders == ["method_of_assessment"]


def test_period_helpers() -> None:
    assert synth.default_period_end(date(2026, 11, 25)) == date(2026, 9, 30)
    assert synth.default_period_end(date(2026, 3, 31)) == date(2025, 12, 31)
    assert synth.default_period_end(date(2026, 1, 1)) == date(2025, 12, 31)
    assert synth.period_start_for(date(2026, 3, 31)) == date(2025, 4, 1)
    assert synth.period_start_for(date(2025, 12, 31)) == date(2025, 1, 1)
    assert synth.period_start_for(date(2028, 2, 28)) == date(2027, 3, 1)


# ---- the command ----


def cli() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        """Only ``generate`` is registered (the full app imports every command group)."""

    cmd_generate.register(app)
    return app


def test_cld_generate_writes_spec_headers_in_spec_order(tmp_path: Path) -> None:
    out = tmp_path / "cld.csv"
    result = CliRunner().invoke(
        cli(), ["generate", "--people", "200", "--seed", "3", "--out", str(out), "--period-end", "31/03/2026"]
    )
    assert result.exit_code == 0, result.output
    with out.open(encoding="utf-8", newline="") as fh:
        lines = list(csv.reader(fh))
    assert lines[0] == [f.header for f in load_spec().file_fields]
    assert "LA Code" not in lines[0]
    assert len(lines) - 1 >= 200
    assert all(len(line) == len(lines[0]) for line in lines)
    assert f"{len(lines) - 1:,} rows for 200 people" in result.output
    assert str(out) in result.output


def test_cld_generate_with_la_code_and_json_truth(tmp_path: Path) -> None:
    out, truth = tmp_path / "cld.csv", tmp_path / "truth.json"
    args = ["generate", "-n", "100", "--out", str(out), "--with-la-code", "--la", "999"]
    args += ["--error-rate", "0.2", "--truth", str(truth), "--release", "r1"]
    result = CliRunner().invoke(cli(), args)
    assert result.exit_code == 0, result.output
    with out.open(encoding="utf-8", newline="") as fh:
        lines = list(csv.reader(fh))
    assert lines[0][0] == "LA Code"
    assert lines[0][1:] == [f.header for f in load_spec().file_fields]
    assert {line[0] for line in lines[1:]} == {"999"}
    errors = json.loads(truth.read_text(encoding="utf-8"))
    assert errors, "a 20% error rate over 100 people injects errors"
    assert set(errors[0]) == {"row", "field", "kind", "expected_validity", "rule"}
    assert all(1 <= e["row"] <= len(lines) - 1 for e in errors)
    assert f"({len(errors):,} errors injected" in result.output


def test_cld_generate_is_reproducible_byte_for_byte(tmp_path: Path) -> None:
    outs = []
    for name in ("a.csv", "b.csv"):
        out = tmp_path / name
        args = ["generate", "-n", "150", "--seed", "42", "--out", str(out), "--error-rate", "0.05"]
        assert CliRunner().invoke(cli(), [*args, "--period-end", "2026-06-30"]).exit_code == 0
        outs.append(out.read_bytes())
    assert outs[0] == outs[1]
    assert b"01/07/2025,30/06/2026," in outs[0]


def test_cld_generate_refuses_bad_options(tmp_path: Path) -> None:
    runner = CliRunner()
    out = str(tmp_path / "x.csv")
    assert runner.invoke(cli(), ["generate", "--out", out, "--la", "31A"]).exit_code == 2
    assert runner.invoke(cli(), ["generate", "--out", out, "--period-end", "31/02/2026"]).exit_code == 2
    assert runner.invoke(cli(), ["generate", "--out", out, "--error-rate", "2"]).exit_code == 2
    assert runner.invoke(cli(), ["generate", "--out", out, "--truth", str(tmp_path / "t.txt")]).exit_code == 2
