"""``cld preview``: outputs and clear errors (exit 2, no traceback, no data values, never the key)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cld_cli.main import app
from cld_schemas.spec import load_spec

KEY_HEX = bytes(range(200, 232)).hex()
SECRET_NAME = "Zqvoranth"  # a made-up first name that must never appear in a message
NHS = "9990000018"  # 999 range, valid Modulus 11 check digit


def _csv(path: Path, rows: int = 6, *, la_code: str | None = "E09000001") -> Path:
    headers = [f.header for f in load_spec().fields if f.in_file is not False]
    with path.open("w", encoding="utf-8", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=headers)
        w.writeheader()
        for i in range(rows):
            w.writerow(
                {
                    "LA Code": la_code or "",
                    "Reporting Period End Date": "31/03/2026",
                    "NHS Number": NHS,
                    "LA Person Unique Identifier": f"LAP-Q{i % 3}",
                    "First Name": SECRET_NAME,
                    "Date of Birth": "12/06/1948",
                    "Postcode": "XX1 4AB",
                    "Gender": "Female",
                    "Event Start Date": f"0{i % 9 + 1}/05/2025",
                }
            )
    return path


def _key(tmp_path: Path, text: str = KEY_HEX) -> Path:
    p = tmp_path / "pseudo.key"
    p.write_text(text, encoding="utf-8")
    return p


def _invoke(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["preview", *args], env=env)
    return result.exit_code, result.output


def test_preview_writes_the_three_outputs(tmp_path: Path) -> None:
    src = _csv(tmp_path / "in.csv")
    code, output = _invoke(str(src), "--key-file", str(_key(tmp_path)), "--out", str(tmp_path / "out"))
    assert code == 0, output
    risk = json.loads((tmp_path / "out/risk.json").read_text(encoding="utf-8"))
    assert risk["people"] == 3
    assert risk["rows"] == 6
    assert risk["min_k"] == 3
    assert risk["qi"] == ["age_band_period_end", "gender", "ethnicity", "postcode_sector", "primary_support_reason"]
    assert risk["k_threshold"] == 5
    assert risk["tenant"] == "E09000001"
    assert risk["purpose"] == "preview"
    assert len(risk["key_id"]) == 8
    report = (tmp_path / "out/report.md").read_text(encoding="utf-8")
    for f in load_spec().fields:
        assert f"| {f.header} |" in report
    assert "Smallest group (minimum k) | 3 |" in report
    assert "warning:" in output
    assert "fewer than 4 other people" in output
    for text in (output, report, json.dumps(risk)):
        assert KEY_HEX not in text
        assert SECRET_NAME not in text


def test_key_from_environment_and_options(tmp_path: Path) -> None:
    src = _csv(tmp_path / "in.csv", la_code=None)
    lookup = tmp_path / "onspd.csv"
    lookup.write_text("pcds,lsoa21cd,msoa21cd\nXX1 4AB,E01999999,E02999999\n", encoding="utf-8")
    code, output = _invoke(
        str(src), "--out", str(tmp_path / "o"), "--tenant", "HUB-NORTH", "--purpose", "dhsc", "--lookup",
        str(lookup), "--qi", "gender,lsoa", "--qi", "birth_year", "--k-threshold", "3",
        env={"CLD_PSEUDO_KEY": KEY_HEX},
    )  # fmt: skip
    assert code == 0, output
    risk = json.loads((tmp_path / "o/risk.json").read_text(encoding="utf-8"))
    assert risk["qi"] == ["gender", "lsoa", "birth_year"]
    assert (risk["tenant"], risk["purpose"], risk["k_threshold"], risk["min_k"]) == ("HUB-NORTH", "dhsc", 3, 3)
    assert risk["warnings"] == []
    with (tmp_path / "o/pseudonymised.csv").open(encoding="utf-8", newline="") as fh:
        row = next(csv.DictReader(fh))
    assert (row["lsoa"], row["msoa"], row["postcode_sector"]) == ("E01999999", "E02999999", "XX1 4")


def _error_cases(tmp_path: Path) -> list[tuple[list[str], dict[str, str] | None, str]]:
    src = _csv(tmp_path / "in.csv")
    out = str(tmp_path / "out")
    key = str(_key(tmp_path))
    empty_key = tmp_path / "empty.key"
    empty_key.write_text("\n", encoding="utf-8")
    short_key = tmp_path / "short.key"
    short_key.write_text("ab" * 31, encoding="utf-8")
    garbage = tmp_path / "garbage.csv"
    garbage.write_text(f"hello,world\n{SECRET_NAME},{NHS}\n", encoding="utf-8")
    binary = tmp_path / "binary.csv"
    binary.write_bytes(b"\xff\xfe\x00\x81" * 100)
    bad_lookup = tmp_path / "lookup.csv"
    bad_lookup.write_text("pcds,lat\nXX1 4AB,1\n", encoding="utf-8")
    no_code = _csv(tmp_path / "nocode.csv", la_code=None)
    return [
        ([str(src), "--key-file", str(tmp_path / "missing.key"), "--out", out], None, "the key file does not exist"),
        ([str(src), "--key-file", str(empty_key), "--out", out], None, "key file: the key is empty"),
        ([str(src), "--key-file", str(short_key), "--out", out], None, "too short"),
        ([str(src), "--out", out], {"CLD_PSEUDO_KEY": ""}, "no key"),
        ([str(src), "--out", out], {"CLD_PSEUDO_KEY": "c0ffee"}, "CLD_PSEUDO_KEY: the key is too short"),
        ([str(tmp_path / "missing.csv"), "--key-file", key, "--out", out], None, "input file does not exist"),
        ([str(garbage), "--key-file", key, "--out", out], None, "not a CLD file"),
        ([str(binary), "--key-file", key, "--out", out], None, "UTF-16 text"),  # its first bytes are a UTF-16 BOM
        ([str(src), "--key-file", key, "--out", out, "--lookup", str(bad_lookup)], None, "--lookup: "),
        ([str(src), "--key-file", key, "--out", out, "--lookup", str(tmp_path / "none.csv")], None, "does not exist"),
        ([str(src), "--key-file", key, "--out", out, "--qi", "postcode"], None, "not a quasi-identifier"),
        ([str(src), "--key-file", key, "--out", out, "--qi", "nhs_number_pseudo"], None, "not a quasi-identifier"),
        ([str(src), "--key-file", key, "--out", out, "--k-threshold", "1"], None, "at least 2"),
        ([str(src), "--key-file", key, "--out", out, "--tenant", "bad tenant"], None, "tenant must be"),
        ([str(no_code), "--key-file", key, "--out", out], None, "--tenant is needed"),
    ]  # fmt: skip


def test_errors_exit_2_with_a_clear_message(tmp_path: Path) -> None:
    for args, env, message in _error_cases(tmp_path):
        code, output = _invoke(*args, env=env)
        assert code == 2, (args, output)
        assert output.startswith("error: "), output
        assert message in output, (message, output)
        assert "Traceback" not in output
        assert KEY_HEX not in output
        assert SECRET_NAME not in output
        assert NHS not in output
        assert not (tmp_path / "out" / "pseudonymised.csv").exists()


def test_broken_csv_mid_file_leaves_no_partial_output(tmp_path: Path) -> None:
    src = _csv(tmp_path / "in.csv", rows=3000)  # large enough that rows are written before the bad bytes
    with src.open("ab") as fh:
        fh.write(b'"unterminated,\xff\xfe' + SECRET_NAME.encode() + b"\n")
    code, output = _invoke(str(src), "--key-file", str(_key(tmp_path)), "--out", str(tmp_path / "out"))
    assert code == 2, output
    assert output.startswith("error: input file"), output
    assert SECRET_NAME not in output
    # Read as Windows-1252 (the bad bytes make it not UTF-8), the broken quote is refused at its line.
    assert "line 3002" in output or "after row" in output
    assert list((tmp_path / "out").iterdir()) == []


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig"])
def test_bom_or_not(tmp_path: Path, encoding: str) -> None:
    src = _csv(tmp_path / "in.csv")
    src.write_text(src.read_text(encoding="utf-8"), encoding=encoding)
    code, output = _invoke(str(src), "--key-file", str(_key(tmp_path)), "--out", str(tmp_path / "out"))
    assert code == 0, output
