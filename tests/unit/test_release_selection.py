"""Issue 13 item 6: which release a record is checked against (pure selection), the cut-over as spec data,
and the hint when a file looks like the other release."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from cld_governance.tenancy import Source, SourceKind
from cld_schemas.spec import Release, load_spec
from cld_validation.release import (
    ReleaseBasis,
    ReleaseLabels,
    parse_release,
    release_by_period,
    select_release,
)

SPEC = load_spec()


def test_the_cut_over_is_data_with_its_source_and_says_the_date_is_an_estimate() -> None:
    sel = SPEC.release_selection
    assert sel is not None
    r2 = sel.cut_over(Release.R2)
    assert r2 is not None
    assert r2.from_ == date(2025, 7, 1)
    assert r2.exact is False
    assert "R-VER-4" in r2.source
    assert "not public" in r2.note
    r1 = sel.cut_over(Release.R1)
    assert r1 is not None
    assert (r1.from_, r1.exact) == (date(2023, 4, 1), True)


@pytest.mark.parametrize(
    ("period_end", "expected"),
    [
        ("31/03/2024", Release.R1),  # 2023/24
        ("31/03/2025", Release.R1),  # 2024/25
        ("30/06/2025", Release.R1),  # Q1 2025/26: the day before the cut-over
        ("01/07/2025", Release.R2),
        ("31/03/2026", Release.R2),  # 2025/26
        ("2026-03-31", Release.R2),  # ISO dates are read too
        ("31/03/2020", Release.R1),  # before the first cut-over: the earliest release
    ],
)
def test_the_release_in_force_at_the_end_of_the_reporting_period(period_end: str, expected: Release) -> None:
    choice = release_by_period({"reporting_period_end_date": period_end})
    assert choice.release is expected
    assert choice.basis is ReleaseBasis.REPORTING_PERIOD_END


def test_without_a_readable_period_end_the_event_dates_then_the_latest_release_decide() -> None:
    assert release_by_period({"reporting_period_end_date": "31/13/2025", "event_end_date": "01/02/2025"}) == (
        release_by_period({"event_end_date": "01/02/2025"})
    )
    got = release_by_period({"reporting_period_end_date": "soon", "event_end_date": "01/02/2025"})
    assert (got.release, got.basis) == (Release.R1, ReleaseBasis.EVENT_END)
    got = release_by_period({"event_start_date": "01/08/2025"})
    assert (got.release, got.basis) == (Release.R2, ReleaseBasis.EVENT_START)
    got = release_by_period({})
    assert (got.release, got.basis) == (Release.R2, ReleaseBasis.LATEST)


def test_upload_beats_source_beats_setting_beats_period() -> None:
    rec = {"reporting_period_end_date": "31/03/2026"}
    assert select_release(rec).release is Release.R2
    assert select_release(rec, configured=Release.R1).basis is ReleaseBasis.SETTING
    got = select_release(rec, source=Release.R1, configured=Release.R2)
    assert (got.release, got.basis) == (Release.R1, ReleaseBasis.SOURCE)
    got = select_release(rec, upload=Release.R2, source=Release.R1, configured=Release.R1)
    assert (got.release, got.basis) == (Release.R2, ReleaseBasis.UPLOAD)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("r1", Release.R1), ("R2", Release.R2), (" 2 ", Release.R2), ("Release 1", Release.R1), ("r3", None), ("", None)],
)
def test_release_header_values(text: str, expected: Release | None) -> None:
    assert parse_release(text) is expected


def test_a_source_may_name_its_release_and_need_not() -> None:
    assert Source(id="s", kind=SourceKind.LA_SYSTEM, la_codes=("318",)).release is None
    assert Source(id="s", kind=SourceKind.LA_SYSTEM, la_codes=("318",), release="r1").release is Release.R1  # type: ignore[arg-type]


def _r1_row() -> dict[str, str]:
    return {
        "ethnicity": "White - Irish",
        "client_type": "Service User",
        "accommodation_status": "Tenant - private landlord",
        "service_type": "Long Term Support: Community",
        "gender": "Female",  # the same in both releases: tells nothing
    }


def test_a_release_1_file_checked_as_release_2_gets_a_hint_with_counts() -> None:
    labels = ReleaseLabels(SPEC)
    for _ in range(30):
        labels.add(_r1_row())
    labels.add({"ethnicity": "White: Irish"})  # one Release 2 label among them
    assert labels.counts == {Release.R1: 120, Release.R2: 1}
    hint = labels.hint(Release.R2)
    assert hint is not None
    assert hint.startswith("120 of 121 coded values are Release 1 labels: is this a Release 1 file?")
    assert labels.hint(Release.R1) is None  # checked against the release it looks like: nothing to say
    assert labels.to_json(Release.R2)["looks_like"] == "r1"


def test_no_hint_for_a_mixed_or_tiny_file() -> None:
    mixed = ReleaseLabels(SPEC)
    for _ in range(10):
        mixed.add({"ethnicity": "White - Irish"})
        mixed.add({"ethnicity": "White: Irish"})
    assert mixed.hint(Release.R2) is None
    tiny = ReleaseLabels(SPEC)
    tiny.add({"ethnicity": "White - Irish"})
    assert tiny.hint(Release.R2) is None


def test_cld_spec_gaps_shows_the_cut_over_with_its_source_and_that_it_is_an_estimate() -> None:
    from typer.testing import CliRunner

    from cld_cli.main import app

    result = CliRunner().invoke(app, ["spec", "gaps"])
    assert result.exit_code == 0
    flat = " ".join(result.output.split())
    assert "Release 2 from 01/07/2025 (NOT exact: a documented best estimate)" in flat
    assert "R-VER-4" in flat


def test_cld_tenants_add_source_records_a_release_and_list_shows_it(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from cld_cli.main import app
    from cld_governance.loaders import load_registry

    reg, runner = tmp_path / "tenants.json", CliRunner()
    assert (
        runner.invoke(app, ["tenants", "add-tenant", "--registry", str(reg), "--la", "318", "--name", "A"]).exit_code
        == 0
    )
    base = ["tenants", "add-source", "--registry", str(reg), "--kind", "la_system", "--la", "318"]
    assert runner.invoke(app, [*base, "--id", "legacy", "--release", "R1"]).exit_code == 0
    assert runner.invoke(app, [*base, "--id", "modern"]).exit_code == 0
    bad = runner.invoke(app, [*base, "--id", "odd", "--release", "r3"])
    assert bad.exit_code == 2
    assert "--release must be r1 or r2" in bad.output

    loaded = load_registry(reg)
    assert [(s.id, s.release) for s in loaded.sources] == [("legacy", Release.R1), ("modern", None)]
    listed = runner.invoke(app, ["tenants", "list", "--registry", str(reg)], terminal_width=200)
    assert "by period" in listed.output
