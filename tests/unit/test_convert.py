"""Release conversion (``cld convert``) and NHS England's R2 mapping workbook as ``--codelists``.

- A value maps to the target release only through a shared key, and only when exactly one target value has it;
  otherwise it is left unchanged and reported with the reason (never guessed).
- Every other cell, unknown columns and the row order are copied unchanged; the exit code says whether anything
  could not be mapped; the converted file then validates as Release 2 for every list the spec knows.
- The mapping workbook layout (``Variable``, ``Release 2 value``, ``comparison``, optional Release 1 value), on a
  sheet after a cover sheet, loads as code list overrides; a Release 1 value on the same row shares the key.
"""

from __future__ import annotations

import csv
import json
from datetime import date
from pathlib import Path

import pytest
from openpyxl import Workbook
from typer.testing import CliRunner

from cld_cli.main import app
from cld_schemas.releasemap import Unmapped, field_mapping, release_mappings
from cld_schemas.spec import (
    CodeList,
    CodeListError,
    CodeValue,
    Completeness,
    Release,
    load_code_list_override,
    load_spec,
)
from cld_synth.generator import generate_rows
from tests.support.builders import a_service_row

SPEC = load_spec()
R1, R2 = Release.R1, Release.R2
HEADERS = [f.header for f in SPEC.file_fields]
runner = CliRunner()


def _write(path: Path, rows: list[dict[str, str | None]], *, extra: dict[str, str] | None = None) -> Path:
    by_header = {f.header: f.name for f in SPEC.fields}
    headers = HEADERS + list(extra or {})
    with path.open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(headers)
        for row in rows:
            w.writerow([(row.get(by_header[h]) or "") if h in by_header else (extra or {})[h] for h in headers])
    return path


def _read(path: Path) -> list[list[str]]:
    with path.open(encoding="utf-8", newline="") as fh:
        return list(csv.reader(fh))


# ---- the pure mapping ----


def test_a_release_1_label_maps_to_the_release_2_value_with_the_same_key() -> None:
    m = field_mapping(SPEC.field("client_type"), source=R1, target=R2)
    assert m.map("Carer") == ("Unpaid carer", None)
    assert m.map("Service User") == ("Service user", None)
    assert m.map("Unpaid carer") == ("Unpaid carer", None)  # already Release 2: unchanged


def test_a_value_with_no_counterpart_is_left_unchanged_with_the_reason() -> None:
    m = field_mapping(SPEC.field("client_type"), source=R1, target=R2)
    assert m.map("Not a client type") == ("Not a client type", Unmapped.NOT_IN_SOURCE)
    unknown_target = field_mapping(SPEC.field("method_of_review"), source=R1, target=R2)
    assert not unknown_target.target_known
    assert unknown_target.map("Carer only") == ("Carer only", Unmapped.TARGET_UNKNOWN)


def test_two_target_values_sharing_a_key_are_ambiguous_never_guessed() -> None:
    f = SPEC.field("client_type")
    lists = dict(f.code_lists or {})
    lists[R2] = CodeList(
        completeness=Completeness.COMPLETE,
        values=(CodeValue(value="Unpaid carer", key="carer"), CodeValue(value="Carer (unpaid)", key="carer")),
    )
    r1_carer = next(v for v in lists[R1].values if v.value == "Carer")
    lists[R1] = CodeList(completeness=Completeness.COMPLETE, values=(r1_carer.model_copy(update={"key": "carer"}),))
    m = field_mapping(f.model_copy(update={"code_lists": lists}), source=R1, target=R2)
    assert m.map("Carer") == ("Carer", Unmapped.AMBIGUOUS)


def test_every_coded_field_with_lists_has_a_mapping_and_keys_are_values_of_the_target() -> None:
    maps = release_mappings(SPEC, source=R1, target=R2)
    assert "ethnicity" in maps
    assert "nhs_number" not in maps
    for name, m in maps.items():
        r2 = SPEC.field(name).code_list(R2)
        targets = {v.value for v in r2.values} if r2 else set()
        assert set(m.mapped.values()) <= targets, name


# ---- the command ----


def test_convert_maps_r1_labels_copies_everything_else_and_the_result_validates_as_r2(tmp_path: Path) -> None:
    rows = [row for row, _ in generate_rows(people=30, seed=5, period_end=date(2025, 3, 31), release=R1)]
    src = _write(tmp_path / "r1.csv", rows, extra={"Local note": "keep me"})
    out, report = tmp_path / "r2.csv", tmp_path / "conv.json"
    result = runner.invoke(app, ["convert", str(src), "--to", "r2", "--out", str(out), "--report", str(report)])
    assert "Traceback" not in result.output
    assert result.exit_code in (0, 1)
    before, after = _read(src), _read(out)
    assert after[0] == before[0]
    assert len(after) == len(before)
    data = json.loads(report.read_text())
    assert data["rows"] == len(rows)
    assert data["from"] == "r1"
    assert data["to"] == "r2"
    assert (result.exit_code == 1) == bool(data["unmapped"])
    coded = {SPEC.by_name()[n].header for n in release_mappings(SPEC, source=R1, target=R2)}
    for b, a in zip(before[1:], after[1:], strict=True):
        for header, old, new in zip(before[0], b, a, strict=True):
            if header not in coded:
                assert old == new, header  # non-coded cells and the unknown column untouched
    ct = before[0].index("Client Type")
    assert "Carer" not in {r[ct] for r in after[1:]}
    assert any(m["field"] == "Client Type" and m["to"] == "Unpaid carer" for m in data["mapped"]) or not any(
        r[ct] == "Carer" for r in before[1:]
    )
    validated = runner.invoke(app, ["validate", str(out), "--release", "r2"])
    assert "Failed: Release 1" not in validated.output


def test_convert_reports_each_unmapped_value_with_rows_and_exits_1(tmp_path: Path) -> None:
    row = a_service_row(R1, client_type="Carer", method_of_review="Carer only")
    src = _write(tmp_path / "in.csv", [row, row])
    out, report = tmp_path / "out.csv", tmp_path / "r.json"
    result = runner.invoke(app, ["convert", str(src), "--out", str(out), "--report", str(report)])
    assert result.exit_code == 1, result.output
    data = json.loads(report.read_text())
    unmapped = {(u["field"], u["value"]): u for u in data["unmapped"]}
    assert unmapped[("Method of Review", "Carer only")]["count"] == 2
    assert unmapped[("Method of Review", "Carer only")]["first_rows"] == [1, 2]
    assert unmapped[("Method of Review", "Carer only")]["why"] == Unmapped.TARGET_UNKNOWN.value
    assert "could not be mapped" in result.output


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "empty"),
        (b"a,b\n1,2\n", "not a CLD file"),
        (b"\xff\xfe\x00bad", "UTF-16"),  # a UTF-16 byte-order mark: Excel's "Unicode Text"
    ],
)
def test_unusable_input_exits_2_with_a_message_and_no_output(tmp_path: Path, content: bytes, expected: str) -> None:
    src = tmp_path / "bad.csv"
    src.write_bytes(content)
    out = tmp_path / "out.csv"
    result = runner.invoke(app, ["convert", str(src), "--out", str(out)])
    assert result.exit_code == 2
    assert expected in result.output
    assert "Traceback" not in result.output
    assert not out.exists()


def test_a_broken_quote_names_the_line_and_writes_nothing(tmp_path: Path) -> None:
    src = _write(tmp_path / "in.csv", [a_service_row(R1)])
    src.write_text(src.read_text() + 'x,"unterminated\n')
    out = tmp_path / "out.csv"
    result = runner.invoke(app, ["convert", str(src), "--out", str(out)])
    assert result.exit_code == 2
    assert "line" in result.output
    assert "quote" in result.output
    assert not out.exists()


def test_an_unwritable_output_is_a_clear_error(tmp_path: Path) -> None:
    src = _write(tmp_path / "in.csv", [a_service_row(R1)])
    for out in (tmp_path, tmp_path / "missing" / "out.csv"):
        result = runner.invoke(app, ["convert", str(src), "--out", str(out)])
        assert result.exit_code == 2, out
        said = " ".join(result.output.split())
        assert "cannot write" in said or "is a folder" in said
        assert "Traceback" not in result.output


# ---- NHS England's R2 mapping workbook as --codelists ----


def _mapping_workbook(path: Path, rows: list[tuple[str, str, str, str]]) -> Path:
    wb = Workbook()
    cover = wb.active
    assert cover is not None
    cover.title = "Cover"
    cover.append(["Client Level Data: Release 2 mapping (synthetic test copy)"])
    sheet = wb.create_sheet("Mapping")
    sheet.append(["Notes above the table"])
    sheet.append(["Variable", "Release 1 value", "Release 2 value", "comparison"])
    for r in rows:
        sheet.append(list(r))
    wb.save(path)
    return path


def test_the_mapping_workbook_loads_as_overrides_with_shared_keys(tmp_path: Path) -> None:
    path = _mapping_workbook(
        tmp_path / "mapping.xlsx",
        [
            ("Method of Review", "Carer only", "Unpaid carer only", "Changed"),
            ("Method of Review", "Service user only", "Service user only", "No change"),
            ("Method_of_Review", "Service user and carer", "Service user and unpaid carer", "Changed"),
            ("NHS Number", "", "", ""),  # not a coded field: skipped, not refused
        ],
    )
    overrides = load_code_list_override(path, spec=SPEC)
    r2 = overrides[("method_of_review", R2)]
    r1 = overrides[("method_of_review", R1)]
    assert [v.value for v in r2.values] == ["Unpaid carer only", "Service user only", "Service user and unpaid carer"]
    assert r2.completeness is Completeness.COMPLETE
    keys_r1 = {v.value: v.key for v in r1.values}
    keys_r2 = {v.value: v.key for v in r2.values}
    assert keys_r1["Carer only"] == keys_r2["Unpaid carer only"]
    spec = SPEC.with_code_lists(overrides)
    m = field_mapping(spec.field("method_of_review"), source=R1, target=R2)
    assert m.map("Carer only") == ("Unpaid carer only", None)


def test_convert_with_the_mapping_workbook_maps_what_the_spec_alone_could_not(tmp_path: Path) -> None:
    wb = _mapping_workbook(
        tmp_path / "mapping.xlsx", [("Method of Review", "Carer only", "Unpaid carer only", "Changed")]
    )
    src = _write(tmp_path / "in.csv", [a_service_row(R1, method_of_review="Carer only")])
    out, report = tmp_path / "out.csv", tmp_path / "r.json"
    result = runner.invoke(
        app, ["convert", str(src), "--out", str(out), "--codelists", str(wb), "--report", str(report)]
    )
    assert "Traceback" not in result.output
    data = json.loads(report.read_text())
    assert {"field": "Method of Review", "from": "Carer only", "to": "Unpaid carer only", "count": 1} in data["mapped"]
    col = _read(out)[0].index("Method of Review")
    assert _read(out)[1][col] == "Unpaid carer only"


def test_a_mapping_workbook_naming_an_unknown_variable_is_refused(tmp_path: Path) -> None:
    path = _mapping_workbook(tmp_path / "m.xlsx", [("Favourite colour", "", "Blue", "Changed")])
    with pytest.raises(CodeListError, match="unknown variable"):
        load_code_list_override(path, spec=SPEC)


def test_a_workbook_with_no_usable_heading_is_refused_clearly(tmp_path: Path) -> None:
    wb = Workbook()
    ws = wb.active
    assert ws is not None
    ws.append(["something", "else"])
    wb.save(tmp_path / "x.xlsx")
    with pytest.raises(CodeListError, match="heading row"):
        load_code_list_override(tmp_path / "x.xlsx", spec=SPEC)
