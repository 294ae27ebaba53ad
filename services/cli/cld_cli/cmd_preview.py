"""``cld preview``: pseudonymise an LA's CLD file locally and measure its re-identification risk.

Streams the file in frames of ``BATCH_ROWS`` rows (csvfile's strict parser, the frames of the columnar
validation engine): each frame is pseudonymised by ``Pseudonymiser.pseudonymise_frame`` (expressions; HMAC once per
distinct value), written by polars' CSV writer and reduced to one row per person for the risk figures, which are
group-bys (``cld_pseudonymisation.columnar.FrameRisk``). No Python of this command runs per row (csvfile's parser
does). Memory grows only with the number of people. Writes ``DIR/pseudonymised.csv``, ``DIR/risk.json`` and
``DIR/report.md``. Errors exit with code 2 and a message that holds no data from the file and never the key.
See docs/pseudonymisation.md.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
from collections.abc import Iterator, Sequence
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

if TYPE_CHECKING:
    import polars as pl

    from cld_pseudonymisation.keys import PseudonymKey

KEY_ENV_VAR = "CLD_PSEUDO_KEY"
OUTPUT_CSV = "pseudonymised.csv"
OUTPUT_RISK = "risk.json"
OUTPUT_REPORT = "report.md"
KEY_ID_COLUMN = "pseudonym_key_id"
BATCH_ROWS = 20_000
"""Rows per frame: peak RSS ~250 MB at 10,000 and ~460 MB at 50,000 on 200,000 rows, for a few per cent of CPU."""


class _UsageError(Exception):
    """A problem the user can fix; the message is safe to show (no data values, no key)."""


def _fail(message: str, code: int = 2) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    app.command("preview")(preview)


def preview(
    file: Annotated[Path, typer.Argument(help="The LA's CLD file (CSV with the spec's headers).")],
    out: Annotated[Path, typer.Option("--out", help="Directory for pseudonymised.csv, risk.json and report.md.")],
    key_file: Annotated[
        Path | None,
        typer.Option(
            "--key-file",
            help=f"File holding the pseudonymisation key as hex or base64 (>= 32 bytes). Without it the key "
            f"is read from the {KEY_ENV_VAR} environment variable.",
        ),
    ] = None,
    lookup: Annotated[
        Path | None,
        typer.Option("--lookup", help="ONS postcode lookup CSV (ONSPD/NSPL columns pcds, lsoa21cd, msoa21cd...)."),
    ] = None,
    tenant: Annotated[
        str | None,
        typer.Option("--tenant", help="LA code or hub id (default: the LA Code of the file's first row)."),
    ] = None,
    purpose: Annotated[str, typer.Option("--purpose", help="Recipient or use of the data.")] = "preview",
    qi: Annotated[
        list[str] | None,
        typer.Option(
            "--qi",
            help="Quasi-identifier column (repeat or comma-separate). Default: age band, "
            "gender, ethnicity, postcode sector, primary support reason.",
        ),
    ] = None,
    k_threshold: Annotated[int, typer.Option("--k-threshold", help="Warn when a group is smaller than this.")] = 5,
) -> None:
    """Pseudonymise a CLD file as it would be shared onward and report the re-identification risk."""
    try:
        _run(file, out, key_file, lookup, tenant, purpose, qi, k_threshold)
    except _UsageError as exc:
        _fail(str(exc))
    except typer.Exit:
        raise
    except Exception as exc:  # never a traceback: messages of unknown errors could carry data values
        _fail(f"internal error ({type(exc).__name__}); the outputs may be missing or incomplete", code=1)


def _load_key(key_file: Path | None) -> PseudonymKey:
    from cld_pseudonymisation.keys import PseudonymKey, PseudonymKeyError

    try:
        if key_file is not None:
            return PseudonymKey.from_file(key_file)
        text = os.environ.get(KEY_ENV_VAR)
        if not text:
            raise _UsageError(f"no key: give --key-file or set {KEY_ENV_VAR}")
        return PseudonymKey.from_text(text)
    except PseudonymKeyError as exc:
        source = "key file" if key_file is not None else KEY_ENV_VAR
        raise _UsageError(f"{source}: {exc}") from None


@contextlib.contextmanager
def _progress(total: int) -> Iterator[Any]:
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

    console = Console(stderr=True)
    with Progress(
        TextColumn("pseudonymising"),
        BarColumn(),
        DownloadColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=not console.is_terminal,
        transient=True,
    ) as progress:
        task = progress.add_task("preview", total=total)
        yield lambda done: progress.update(task, completed=done)


def csv_rows(frame: pl.DataFrame, columns: Sequence[str], key_id: str) -> str:
    """The frame's rows (``columns``, then the key id) as ``csv.writer`` writes them: polars' writer quotes the
    same cells (separator, quote, CR, LF) but writes "" as a quoted empty cell where csv.writer writes nothing
    (as for None), so "" is written as null."""
    import polars as pl

    blank_as_null = [pl.when(pl.col(c) != "").then(pl.col(c)).alias(c) for c in columns]
    return frame.select(*blank_as_null, pl.lit(key_id).alias(KEY_ID_COLUMN)).write_csv(
        include_header=False, line_terminator="\r\n"
    )


def _make_out_dir(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _UsageError(f"--out: cannot create the directory ({type(exc).__name__})") from None


def _run(
    file: Path,
    out: Path,
    key_file: Path | None,
    lookup_path: Path | None,
    tenant: str | None,
    purpose: str,
    qi_opts: list[str] | None,
    k_threshold: int,
) -> None:
    from cld_pseudonymisation.columnar import FrameRisk
    from cld_pseudonymisation.generalise import LookupFileError, PostcodeLookup
    from cld_pseudonymisation.policy import PolicyError, load_policy
    from cld_pseudonymisation.pseudonymiser import Pseudonymiser, PseudonymiserError
    from cld_pseudonymisation.report import ReportContext, render_report
    from cld_pseudonymisation.risk import DEFAULT_QI
    from cld_schemas.csvfile import CLDFileError, iter_records
    from cld_validation.columnar import iter_frames

    if k_threshold < 2:
        raise _UsageError("--k-threshold must be at least 2")
    key = _load_key(key_file)
    try:
        policy = load_policy()
    except PolicyError as exc:
        raise _UsageError(f"pseudonymisation policy: {exc}") from None
    lookup = None
    if lookup_path is not None:
        try:
            lookup = PostcodeLookup.from_csv(lookup_path)
        except LookupFileError as exc:
            raise _UsageError(f"--lookup: {exc}") from None
    qi_names = tuple(q.strip() for opt in (qi_opts or []) for q in opt.split(",") if q.strip()) or DEFAULT_QI

    from cld_runtime.files import AtomicFile, FileWriteError, os_reason, write_text
    from cld_schemas.lafile import open_la_file

    out_csv = out / OUTPUT_CSV
    stack = contextlib.ExitStack()
    try:  # UTF-8 or Windows-1252, any of , ; tab |, or an .xlsx (issue 13 item 1)
        la_file = stack.enter_context(open_la_file(file))
    except CLDFileError as exc:
        if "no such file" in str(exc):
            raise _UsageError("the input file does not exist") from None
        raise _UsageError(f"input file: {exc}") from None
    size = la_file.size
    with stack:
        try:
            _header, rows = iter_records(la_file.lines, delimiter=la_file.format.delimiter)
            frames = iter_frames(rows, tuple(f.name for f in policy.fields), BATCH_ROWS)
            _make_out_dir(out)  # before the first frame is read: a file broken in it leaves an empty directory
            first = next(frames, None)
        except CLDFileError as exc:
            raise _UsageError(f"input file: {exc}") from None
        except UnicodeDecodeError:
            raise _UsageError(f"input file: not {la_file.format.encoding or 'readable'} text") from None
        if tenant is None:
            tenant = first["la_code"][0] if first is not None and first.height and "la_code" in first.columns else None
            if not tenant:
                raise _UsageError("--tenant is needed: the file has no LA Code to take it from")
        try:
            ps = Pseudonymiser(policy, key, tenant=tenant, purpose=purpose, lookup=lookup)
            qi_names = ps.check_qi_names(qi_names)
        except PseudonymiserError as exc:
            raise _UsageError(str(exc)) from None
        acc = FrameRisk(qi_names, k_threshold=k_threshold)
        columns = ps.output_fields
        n = 0
        target: AtomicFile | None = None
        try:
            target = AtomicFile(out_csv, newline="")  # private, exclusive, never through a symlink
            with _progress(size) as advance:
                csv.writer(target.file).writerow((*columns, KEY_ID_COLUMN))
                for frame in chain((first,) if first is not None else (), frames):
                    p = ps.pseudonymise_frame(frame)
                    acc.add_frame(p)
                    target.file.write(csv_rows(p, columns, ps.key_id))
                    n += frame.height
                    advance(la_file.position())
            target.commit()
        except CLDFileError as exc:
            raise _UsageError(f"input file: {exc}") from None
        except UnicodeDecodeError:
            raise _UsageError(
                f"input file: not {la_file.format.encoding or 'readable'} text after row {n} (the file mixes "
                "encodings: in Excel use Save As > 'CSV UTF-8')"
            ) from None
        except FileWriteError as exc:
            raise _UsageError(f"--out: {exc}") from None
        except OSError as exc:
            raise _UsageError(f"--out: writing {out_csv} failed: {os_reason(exc)}") from None
        finally:
            if target is not None:
                target.abort()  # a no-op after commit

    figures = acc.figures()
    ctx = ReportContext(
        tenant=tenant,
        purpose=purpose,
        key_id=ps.key_id,
        rows=n,
        lookup_used=lookup is not None,
        lookup_columns=", ".join(c for c in (lookup.lsoa_column, lookup.msoa_column) if c) if lookup else None,
    )
    risk = {
        "tenant": tenant,
        "purpose": purpose,
        "key_id": ps.key_id,
        "policy_version": policy.version,
        "lookup_used": lookup is not None,
        **figures.to_dict(),
    }
    try:
        write_text(out / OUTPUT_RISK, json.dumps(risk, indent=2) + "\n")
        write_text(out / OUTPUT_REPORT, render_report(policy, figures, ctx))
    except FileWriteError as exc:
        raise _UsageError(f"--out: {exc}") from None

    typer.echo(
        f"{n} rows, {figures.people} people; minimum k {figures.min_k}; {figures.uniques} unique "
        f"({figures.unique_share:.1%}); key id {ps.key_id}"
    )
    for w in figures.warnings:
        typer.echo(f"warning: {w}", err=True)
    typer.echo(f"wrote {out_csv}, {out / OUTPUT_RISK}, {out / OUTPUT_REPORT}")
