"""Freeze what submission assembly and the dataset checks produce on a wide corpus (issue 11), like ``build.py``.

Run once from the repository root (``.venv/bin/python -m tests.golden.build_submission``) with the engine whose
behaviour is the reference; it writes, under ``tests/golden/data/``, ``submission.json.gz``:

- two snapshots of one LA's record state (``previous`` and ``current``: records added, changed and withdrawn in
  between), built from the golden corpus's inputs of both releases (generated rows with injected errors and the
  adversarial rows) plus injected duplicates by DHSC's keys, person conflicts, reused Event References and
  opt-out flags; for each, the submission file's bytes and SHA-256, the dataset checks, the profile, the
  record-level findings by field and rule, the row findings kept for the DQ report, the manifest and the
  records left out of the period with reasons;
- the quarter-to-quarter diff between the two manifests and its checks;
- ``cld validate``'s checks across rows (``file_checks.FileChecks``) over every input of the golden corpus.

``tests/unit/test_golden_submission.py`` checks the engine in use reproduces it bit for bit. The record-key
secret is fixed (made up) so the order of rows and the keys named in examples are reproducible. Synthetic data
only: NHS numbers from the 999 test range.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import random
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from cld_schemas.events import Finding, Provenance, RecordValidated
from cld_schemas.spec import Release, load_spec
from tests.golden.build import CORPUS, DATA, PREVIEW_TENANT, read_gz_text

GOLDEN = DATA / "submission.json.gz"
LA = PREVIEW_TENANT
PERIOD_START = date(2025, 4, 1)
PERIOD_END = date(2026, 3, 31)
IMPORT_DATE = date(2026, 4, 15)
SECRET_HEX = "c1d5" * 16
"""A fixed, made-up record-key secret: record order and keys are reproducible, and mean nothing elsewhere."""
SEED = 20261206
T0 = datetime(2026, 4, 10, tzinfo=UTC)
_SOURCES = ("case-system", "finance-system")
_OPT_OUTS = ("national-data-opt-out", "objection")


def corpus_records(name: str) -> Iterator[dict[str, str | None]]:
    """The records of one golden input (cells by spec field name; a short row's missing cells are absent)."""
    fields = load_spec().file_fields
    reader = csv.reader(io.StringIO(read_gz_text(DATA / f"{name}.csv.gz"), newline=""))
    next(reader)
    for cells in reader:
        record: dict[str, str | None] = {f.name: cells[i] for i, f in enumerate(fields) if i < len(cells)}
        record["la_code"] = LA  # as ingest sets it (the LA is the tenant, not a column of the file)
        yield record


def _validated(
    record: dict[str, str | None],
    release: Release,
    *,
    n: int,
    source: str,
    opt_outs: tuple[str, ...] = (),
    withdrawn: bool = False,
) -> RecordValidated:
    from cld_validation.rules import validate_record

    found = [] if withdrawn else validate_record(record, release=release).findings
    findings = [
        Finding(field=f.header, status=f.status, validity=f.validity, rule=f.rule, message=f.message, fix=f.fix)
        for f in found
    ]
    return RecordValidated(
        la_code=LA,
        release=release,
        provenance=Provenance(
            source=source, event_id=f"golden-{n}", received_at=T0 + timedelta(seconds=n), opt_outs=list(opt_outs)
        ),
        record=record,
        findings=findings,
        failed=any(f.validity.failed for f in found),
        withdrawn=withdrawn,
        validated_at=T0,
    )


def _injected(
    records: list[tuple[dict[str, str | None], Release]], rnd: random.Random
) -> Iterator[tuple[dict[str, str | None], Release]]:
    """Copies that the dataset checks must notice: DHSC duplicates under a new reference, a reference reused for
    another event, and one person with another date of birth or gender (in another casing too)."""
    for i, (rec, release) in enumerate(records):
        if not rec.get("event_reference"):
            continue
        pick = rnd.randrange(30)
        if pick == 0:
            yield {**rec, "event_reference": f"DUP{i:06d}"}, release
        elif pick == 1:
            start = rec.get("event_start_date") or ""
            yield {**rec, "event_start_date": "01/05/2025" if start != "01/05/2025" else "02/05/2025"}, release
        elif pick == 2:
            yield {**rec, "event_reference": f"DOB{i:06d}", "date_of_birth": "01/01/1950"}, release
        elif pick == 3:
            gender = rec.get("gender") or ""
            yield {**rec, "event_reference": f"GEN{i:06d}", "gender": gender.upper() if i % 2 else "Other"}, release


def build_state(state_dir: Path) -> tuple[Any, list[RecordValidated]]:
    """The ``previous`` state in a store under ``state_dir``, and the changes that make it ``current``."""
    from cld_submission.adapters.sqlite_record_store import StateStore
    from cld_submission.domain.records import Incoming

    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / "record-key.secret").write_text(SECRET_HEX, encoding="ascii")
    rnd = random.Random(SEED)
    records: list[tuple[dict[str, str | None], Release]] = []
    for name in ("generated_r1", "generated_r2", "adversarial_r1", "adversarial_r2"):
        records += [(r, CORPUS[name]) for r in corpus_records(name)]
    records += list(_injected(records, rnd))
    events = []
    for n, (rec, release) in enumerate(records):
        flags = (rnd.choice(_OPT_OUTS),) if rnd.randrange(25) == 0 else ()
        events.append(_validated(rec, release, n=n, source=_SOURCES[n % 7 == 0], opt_outs=flags))
    rnd.shuffle(events)
    store = StateStore.open(state_dir)
    store.apply_many(Incoming(e) for e in events)
    # Between the two submissions: some records withdrawn, some changed, some new.
    changes: list[RecordValidated] = []
    n = len(events)
    for e in rnd.sample(events, 120):
        n += 1
        kind = rnd.randrange(3)
        rec = dict(e.record)
        if kind == 0:
            changes.append(_validated(rec, e.release, n=n, source=e.provenance.source, withdrawn=True))
        elif kind == 1:
            rec["event_end_date"] = "30/03/2026"
            changes.append(_validated(rec, e.release, n=n, source=e.provenance.source))
        else:
            rec["event_reference"] = f"NEW{n:06d}"
            changes.append(_validated(rec, e.release, n=n, source=e.provenance.source))
    return store, changes


def submission_result(state: Any, workdir: Path, name: str) -> dict[str, Any]:
    """What the engine in use assembles and checks for the LA and period from ``state`` (a ``StateStore``)."""
    import polars as pl

    from cld_submission.adapters.submission_file import write_frames
    from cld_submission.domain.checks import DatasetChecker, left_out_check, left_out_of
    from cld_submission.domain.frames import decoded, manifest_rows, raw_frame, row_findings

    checker = DatasetChecker(period_start=PERIOD_START, period_end=PERIOD_END, import_date=IMPORT_DATE)
    found: list[list[Any]] = []
    manifest: list[list[Any]] = []

    def on_batch(batch: pl.DataFrame) -> None:  # as ``workflow.SubmissionWorkflow._build`` records each batch
        checker.add_frame(batch)
        found.extend([f.row, f.event_reference, [list(x) for x in f.findings]] for f in row_findings(batch))
        manifest.extend(
            [m.entry.record_key, m.entry.content_hash, m.entry.open_service, m.event_id, m.source, m.opt_outs]
            for m in manifest_rows(batch, PERIOD_END)
        )

    path = workdir / f"{name}.csv"
    file = write_frames(
        decoded(raw_frame(rows) for rows in state.iter_in_scope_batches(LA, PERIOD_START, PERIOD_END, batch=1000)),
        path,
        period_start=PERIOD_START,
        period_end=PERIOD_END,
        on_batch=on_batch,
    )
    left = left_out_of(
        state.iter_left_out(LA, PERIOD_START, PERIOD_END),
        in_file=file.rows,
        period_start=PERIOD_START,
        period_end=PERIOD_END,
    )
    left_check = left_out_check(left)
    data = path.read_bytes()
    return {
        "file": {
            "sha256": file.sha256,
            "sha256_of_bytes": hashlib.sha256(data).hexdigest(),
            "rows": file.rows,
            "size_bytes": file.size_bytes,
            "opt_out_rows": file.opt_out_rows,
            "text": data.decode("utf-8"),
        },
        "checks": [c.model_dump(mode="json") for c in checker.finish()],
        "profile": checker.profile().model_dump(mode="json"),
        "record_findings": [f.model_dump(mode="json") for f in checker.record_findings()],
        "row_findings": found,
        "manifest": manifest,
        "left_out": left.model_dump(mode="json"),
        "left_out_check": left_check.model_dump(mode="json") if left_check is not None else None,
    }


def diff_result(previous: list[list[Any]], current: list[list[Any]]) -> dict[str, Any]:
    """The quarter-to-quarter diff between two frozen manifests (sorted by record key, as stored)."""
    from cld_submission.domain.checks import ManifestEntry, diff_checks, diff_manifests

    diff = diff_manifests(
        (ManifestEntry(m[0], m[1], m[2]) for m in previous),
        (ManifestEntry(m[0], m[1], m[2]) for m in current),
        previous_submission_id="golden-previous",
    )
    return {"diff": diff.model_dump(mode="json"), "checks": [c.model_dump(mode="json") for c in diff_checks(diff)]}


def file_checks_result(name: str, release: Release) -> dict[str, Any]:
    """``cld validate``'s checks across rows over one golden input (row findings from the record rules)."""
    from cld_submission.domain.file_checks import FileChecks
    from cld_validation.rules import validate_record

    checks = FileChecks(import_date=IMPORT_DATE, la_code=LA)
    for row, record in enumerate(corpus_records(name), start=1):
        found = validate_record(record, release=release).findings
        checks.add(row, record, ((f.header, f.rule, f.validity.value) for f in found))
    return checks.finish().to_json()


def result(workdir: Path) -> dict[str, Any]:
    """Everything frozen: both snapshots, the diff and the file checks."""
    from cld_submission.domain.records import Incoming

    store, changes = build_state(workdir / "state")
    try:
        previous = submission_result(store, workdir, "previous")
        store.apply_many(Incoming(e) for e in changes)
        current = submission_result(store, workdir, "current")
    finally:
        store.close()
    return {
        "previous": previous,
        "current": current,
        "diff": diff_result(previous["manifest"], current["manifest"]),
        "file_checks": {name: file_checks_result(name, release) for name, release in CORPUS.items()},
    }


def main() -> None:  # pragma: no cover - run by hand to (re)freeze
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        blob = json.dumps(result(Path(tmp)), ensure_ascii=False, indent=0).encode()
    GOLDEN.write_bytes(gzip.compress(blob, mtime=0))
    print(GOLDEN, len(blob))


if __name__ == "__main__":
    main()
