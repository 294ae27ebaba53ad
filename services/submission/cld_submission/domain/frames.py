"""In-scope records as polars frames: what assembly, the manifest and the dataset checks read (issue 11). Pure.

One conversion per hop: the record store hands over batches of its stored columns as they are (``RAW_SCHEMA``:
the record and its findings still as stored JSON text); :func:`decode` turns one batch into the frame assembly
and the dataset checks read (``checks.CHECK_SCHEMA`` plus every column of the file), decoding the JSON in polars,
not row by row in Python. ``adapters.submission_file.write_frames`` writes the file from those frames and hashes
the bytes as they are written (one SHA-256 pass, no read-back).

Row numbers (``_row``) are the file's data rows (1 = the first line after the header), as the dataset checks'
examples and the DQ report name them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from datetime import date
from typing import Final, NamedTuple

import polars as pl

from cld_governance.sharing import parse_opt_out_header
from cld_schemas.spec import Spec, load_spec

from .checks import CHECK_SCHEMA, CHECKED_FIELDS, ManifestEntry
from .records import RowFindings, StoredRecord

RAW_COLUMNS: Final = (
    "record_key",
    "kind",
    "event_type",
    "client_type",
    "person_key",
    "start_date",
    "der_end_date",
    "record_json",
    "findings_json",
    "failed",
    "opt_out",
    "content_hash",
    "event_id",
    "opt_outs",
    "source",
)
"""The record store's columns for one in-scope record, in ``state._COLUMNS`` order."""
RAW_SCHEMA: Final[dict[str, pl.DataType | type[pl.DataType]]] = {
    **dict.fromkeys(RAW_COLUMNS, pl.String),
    "failed": pl.Int64,
    "opt_out": pl.Int64,
}
_FORMULA_START: Final = r"^[=+\-@\t\r]"
"""``assemble.neutralise``: a value starting with = + - @ tab or carriage return."""
_NUMBER: Final = r"^-?\d+(\.\d+)?$"


def raw_frame(rows: Sequence[tuple[object, ...]]) -> pl.DataFrame:
    """A batch of the record store's rows (``RAW_COLUMNS`` order) as a frame, column by column."""
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in RAW_COLUMNS]
    return pl.DataFrame(
        {
            name: pl.Series(name, values, dtype=RAW_SCHEMA[name])
            for name, values in zip(RAW_COLUMNS, columns, strict=True)
        }
    )


def record_fields(spec: Spec | None = None) -> list[str]:
    """The record's fields assembly and the checks read: the file's columns and the checked fields."""
    names = [f.name for f in (spec or load_spec()).file_fields]
    return [*names, *(n for n in CHECKED_FIELDS if n not in names)]


def decode(raw: pl.DataFrame, *, first_row: int, spec: Spec | None = None) -> pl.DataFrame:
    """One batch of ``RAW_SCHEMA`` rows as the frame assembly and the checks read; ``first_row``: its first row's
    number in the file. Adds ``_record_key``, ``_content_hash``, ``_event_id``, ``_source``, ``_opt_outs`` (the
    flags' canonical text) and ``_findings_json`` for the manifest."""
    fields = record_fields(spec)
    record = pl.Struct(dict.fromkeys(fields, pl.String))
    findings = pl.col("findings_json").str.json_decode(pl.List(pl.List(pl.String)))
    return raw.select(
        pl.int_range(first_row, first_row + raw.height, dtype=pl.Int64).alias("_row"),
        pl.col("kind").alias("_kind"),
        pl.col("event_type").alias("_event_type"),
        pl.col("person_key").alias("_person_key"),
        pl.col("der_end_date").alias("_derived_end"),
        ((pl.col("failed") != 0) | (findings.list.len() > 0)).alias("_failed"),
        (pl.col("opt_out") != 0).alias("_opt_out"),
        findings.alias("_findings"),
        pl.col("record_json").str.json_decode(record).alias("_record"),
        pl.col("record_key").alias("_record_key"),
        pl.col("content_hash").alias("_content_hash"),
        pl.col("event_id").alias("_event_id"),
        pl.col("source").fill_null("").alias("_source"),
        _canonical_flags(raw["opt_outs"]),
        pl.col("findings_json").alias("_findings_json"),
    ).unnest("_record")


def _canonical_flags(flags: pl.Series) -> pl.Series:
    """The stored opt-out flags as an export reads them (``StoredRecord.opt_outs``), once per distinct value."""
    text = flags.fill_null("")
    distinct = text.unique()
    canonical = [",".join(sorted(f.value for f in parse_opt_out_header(v))) if v else "" for v in distinct.to_list()]
    return text.replace_strict(distinct, pl.Series(canonical, dtype=pl.String), return_dtype=pl.String).alias(
        "_opt_outs"
    )


def decoded(raw_batches: Iterable[pl.DataFrame], spec: Spec | None = None) -> Iterator[pl.DataFrame]:
    """The record store's raw batches decoded and numbered in file order."""
    row = 1
    for raw in raw_batches:
        yield decode(raw, first_row=row, spec=spec)
        row += raw.height


class ManifestRow(NamedTuple):
    """One row of the file as the manifest keeps it: the entry for the next diff and what an export needs."""

    entry: ManifestEntry
    event_id: str
    source: str
    opt_outs: str


def manifest_rows(batch: pl.DataFrame, period_end: date) -> Iterator[ManifestRow]:
    """The batch's rows for the manifest, in file order. A service still open after the period is marked
    (R-DUP-3: the next diff notices one vanishing without an end date)."""
    end = pl.col("_derived_end")  # ISO text: compared as text, compared as dates
    is_open = (pl.col("_kind") == "service") & (end.is_null() | (end > period_end.isoformat()))
    cols = batch.select("_record_key", "_content_hash", is_open.alias("open"), "_event_id", "_source", "_opt_outs")
    for key, chash, open_service, event_id, source, flags in cols.iter_rows():
        yield ManifestRow(ManifestEntry(key, chash, open_service), event_id, source, flags)


def row_findings(batch: pl.DataFrame) -> Iterator[RowFindings]:
    """The failures of each row of the batch that has any, for the submission's DQ report: (field, rule,
    validity) and the status, message and fix where stored ('' for findings stored before they were kept)."""
    failed = batch.filter(pl.col("_findings").list.len() > 0).select("_row", "event_reference", "_findings_json")
    for row, reference, text in failed.iter_rows():
        yield RowFindings(row, reference, [_finding(f) for f in json.loads(text)])


def _finding(f: list[str]) -> tuple[str, str, str, str, str, str]:
    """A stored finding: (field, rule, validity) and, where stored, (status, message) and fix (else '')."""
    if len(f) >= 5:
        return (str(f[0]), str(f[1]), str(f[2]), str(f[3]), str(f[4]), str(f[5]) if len(f) >= 6 else "")
    return (str(f[0]), str(f[1]), str(f[2]), "", "", "")


def stored_frame(records: Sequence[StoredRecord], *, first_row: int, spec: Spec | None = None) -> pl.DataFrame:
    """Records already read one by one (``state.StoredRecord``) as a decoded batch: the same frame as :func:`decode`
    makes from the store's raw batch."""
    fields = record_fields(spec)
    columns: dict[str, list[object]] = {
        "_row": list(range(first_row, first_row + len(records))),
        "_kind": [r.kind.value for r in records],
        "_event_type": [r.event_type for r in records],
        "_person_key": [r.person_key for r in records],
        "_derived_end": [r.derived_end.isoformat() if r.derived_end else None for r in records],
        "_failed": [bool(r.failed or r.findings) for r in records],
        "_opt_out": [bool(r.opt_out) for r in records],
        "_findings": [[list(f) for f in r.findings] for r in records],
        **{n: [r.record.get(n) for r in records] for n in fields},
        "_record_key": [r.record_key for r in records],
        "_content_hash": [r.content_hash for r in records],
        "_event_id": [r.event_id for r in records],
        "_source": [r.source for r in records],
        "_opt_outs": [",".join(sorted(f.value for f in r.opt_outs)) for r in records],
        "_findings_json": [
            json.dumps(
                [[*f, *n] for f, n in zip(r.findings, r.finding_notes, strict=True)]
                if len(r.finding_notes) == len(r.findings)
                else [list(f) for f in r.findings]
            )
            for r in records
        ],
    }
    schema = {**CHECK_SCHEMA, **dict.fromkeys(fields, pl.String)}
    return pl.DataFrame(columns, schema={n: schema.get(n, pl.String) for n in columns})
