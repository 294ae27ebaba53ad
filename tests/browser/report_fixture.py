"""A DQ report page built from synthetic data only (the `cld` commands themselves, in-process)."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from cld_cli.main import app

PEOPLE = 400
SEED = 13


def build_report(out_dir: Path, *, people: int = PEOPLE, seed: int = SEED) -> tuple[Path, Path]:
    """Generate a synthetic LA file with injected errors and validate it: (the HTML page, the JSON report)."""
    runner = CliRunner()
    src = out_dir / "synthetic-la-file.csv"
    gen = runner.invoke(
        app,
        [
            "generate",
            "--people",
            str(people),
            "--seed",
            str(seed),
            "--error-rate",
            "0.06",
            "--period-end",
            "31/03/2026",
            "--out",
            str(src),
            "--no-progress",
        ],
    )
    if gen.exit_code != 0:
        raise RuntimeError(f"cld generate failed: {gen.output}")
    page, js = out_dir / "dq-report.html", out_dir / "dq-report.json"
    val = runner.invoke(
        app, ["validate", str(src), "--la", "318", "--html", str(page), "--json", str(js), "--no-progress"]
    )
    if val.exit_code not in (0, 1):
        raise RuntimeError(f"cld validate failed: {val.output}")
    return page, js
