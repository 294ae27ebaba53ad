"""Freeze what ``cld validate`` writes on golden inputs (issue 11 item 1: the columnar engine switch-over).

Before ``cld validate`` moved to the columnar engine, its outputs were frozen here: the JSON report (bytes), the
HTML page (bytes), the workbook as cells (sheet by sheet, row by row: an .xlsx file's bytes hold its creation
time), the terminal summary and the exit code, for a few golden inputs and options. ``tests/unit/
test_validate_cli_golden.py`` holds today's command to them byte for byte.

Run from the repository root to (re)freeze: ``.venv/bin/python -m tests.golden.cli_reports`` (it runs the
reference engine, :func:`reference_engine`, never the columnar one it holds to account). The date of the
run matters to nothing in these reports (the checks across rows take today's date only for the submission
deadline, which no report here prints), and everything is synthetic.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.golden.build import DATA, PREVIEW_TENANT, read_gz_text

CASES: dict[str, tuple[str, list[str]]] = {
    "generated_r1.cli": ("generated_r1", ["--release", "r1", "--la", PREVIEW_TENANT]),
    "generated_r2.cli": ("generated_r2", ["--la", PREVIEW_TENANT]),
    "adversarial_r1.cli": ("adversarial_r1", ["--release", "r1", "--la", PREVIEW_TENANT]),
    "adversarial_r2.cli": ("adversarial_r2", ["--la", PREVIEW_TENANT]),
    "fixtures_r2.cli": ("fixtures_r2", ["--release", "r2"]),
}
"""Case name -> (golden input, options). Without --release the release is chosen per record by its period."""


def _cells(path: Path) -> dict[str, list[list[Any]]]:
    from openpyxl import load_workbook

    wb = load_workbook(path, read_only=True)
    try:
        return {ws.title: [list(row) for row in ws.iter_rows(values_only=True)] for ws in wb.worksheets}
    finally:
        wb.close()


def run_case(case: str) -> dict[str, Any]:
    """``cld validate`` on the case's input with --json, --html and --xlsx: what it wrote and said."""
    from typer.testing import CliRunner

    from cld_cli.main import app

    name, options = CASES[case]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        src = work / f"{name}.csv"
        src.write_text(read_gz_text(DATA / f"{name}.csv.gz"), encoding="utf-8", newline="")
        out = {k: work / f"report.{k}" for k in ("json", "html", "xlsx")}
        args = ["validate", str(src), *options, "--no-progress", "--show", "5"]
        args += ["--json", str(out["json"]), "--html", str(out["html"]), "--xlsx", str(out["xlsx"])]
        result = CliRunner().invoke(app, args, env={"COLUMNS": "120"})
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        return {
            "exit_code": result.exit_code,
            "output": result.output.replace(str(work), "<tmp>"),
            "json": out["json"].read_text(encoding="utf-8"),
            "html": out["html"].read_text(encoding="utf-8"),
            "xlsx": _cells(out["xlsx"]),
        }


def load_case(case: str) -> dict[str, Any]:
    with gzip.open(DATA / f"{case}.json.gz", "rt", encoding="utf-8") as fh:
        data: dict[str, Any] = json.load(fh)
    return data


@contextlib.contextmanager
def reference_engine() -> Iterator[None]:
    """``cld validate`` as it ran before the columnar switch: the per-row reference (``reference.validate_stream``)
    with the checks across rows fed one record at a time (``FileChecks``, ``IdentityChecker``, ``ReleaseLabels``).
    For re-freezing after a change elsewhere (say, the submission's dataset checks) without freezing the columnar
    engine's own output."""
    from cld_validation import reference, report
    from cld_validation.identity_checks import IdentityChecker

    columnar = report.validate_stream

    def by_row(*args: Any, on_frame: Any = None, **kwargs: Any) -> Any:
        across = on_frame.__self__
        across.identity = IdentityChecker(across.identity.spec)

        def hook(n: int, rec: dict[str, str | None], found: Any) -> None:
            across.files.add(n, rec, [(f.header, f.rule, f.validity.value) for f in found])
            across.identity.add(n, rec)
            across.labels.add(rec)

        kwargs.pop("batch_size", None)
        return reference.validate_stream(*args, on_record=hook, **kwargs)

    report.validate_stream = by_row  # type: ignore[assignment]
    try:
        yield
    finally:
        report.validate_stream = columnar


def main() -> None:  # pragma: no cover - run by hand to (re)freeze with the reference engine
    for case in CASES:
        with reference_engine():
            data = run_case(case)
        text = json.dumps(data, ensure_ascii=False, default=str, sort_keys=True)
        with gzip.GzipFile(DATA / f"{case}.json.gz", "wb", mtime=0) as fh:
            fh.write(text.encode("utf-8"))
        print(case, data["exit_code"], len(data["json"]), len(data["html"]))


if __name__ == "__main__":  # pragma: no cover
    main()
