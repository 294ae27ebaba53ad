"""Exports of one submission's records to a recipient other than NHS England (issue 6 section 2).

The decision is ``cld_governance.sharing.plan_export`` over the sharing policy; this module only feeds it and
carries it out:

- **What is exported**: exactly the rows of the submission (its snapshot), not whatever the record state holds
  now. The submission's manifest remembers, per row in file order, the record key, the source and event id of
  the version written and the source's opt-out/objection flags. A manifest written before flags were recorded
  (``NULL``) is refused: an export must never go out without its opt-outs applied (fail closed).
- **Refused** (HTTP 403, audited) when the recipient is unknown, has no legal basis recorded, the basis does not
  cover the LA, or the identifiable form is asked for and not permitted. NHS England is not a recipient of this
  route: its flow is the submission itself.
- **Opt-outs applied**: flagged records (national data opt-out, objection, unrecognised flags) are left out.
- **Form**: the recipient's default, pseudonymised unless the policy says otherwise.
  - Pseudonymised: each row's pseudonymised form comes from ``cld.records.pseudonymised.v1`` (kept by LA,
    source, event id and purpose in the record state, ``StateStore.apply_pseudonymised``) and is joined on the
    same key (``StateStore.pseudonymised_forms``): another LA or source reusing an event id never lends its
    form. The purpose must equal the recipient id: NHS England gives every recipient its own pseudonyms, and so
    does this service, so a pseudonymisation instance runs per recipient (``CLD_PURPOSE=<recipient id>``). When
    any included row has no pseudonymised form for that purpose the export is not made (HTTP 409, audited):
    never a partial file, never the identifiable form instead.
  - Identifiable (only where the policy permits it for that recipient): the rows of the submission file itself.
- **Audited**: every decision (planned, refused, unavailable) is a line in the hash-chained audit log with who,
  recipient, legal basis summary and instruments, form, opt-outs applied and counts; never a record id or value.

The file is written to a temporary path and streamed to the caller; the service keeps no copy (the audit line
keeps its SHA-256).
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from cld_governance.sharing import (
    NHS_ENGLAND,
    AuditEntry,
    ExportPlan,
    Form,
    RecordMeta,
    Refusal,
    SharingPolicy,
    plan_export,
)
from cld_runtime.files import private_dir
from cld_schemas.contract import parse_opt_out_header

from ..adapters.audit_log import AuditLog
from ..adapters.ports import RecordStore as StateStore
from ..adapters.ports import SubmissionsRepository as Repository
from ..adapters.sqlite_repository import ExportRow
from ..adapters.submission_file import LINE_TERMINATOR, neutralise
from ..domain.lifecycle import Submission
from .parts import WorkflowParts

_FLUSH_ROWS: Final = 2000


class ExportRefusedError(Exception):
    """The sharing policy refuses the export (HTTP 403). ``detail`` is safe to show and log."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class ExportUnavailableError(Exception):
    """The export is allowed but cannot be made now (HTTP 409); the message says why and what to do."""


class NotAnExportRecipientError(ValueError):
    """NHS England's flow is the submission itself, not an export (HTTP 422)."""


@dataclass(frozen=True, slots=True)
class ExportResult:
    export_id: str
    submission_id: str
    la_code: str
    recipient_id: str
    recipient_name: str
    form: Form
    legal_basis: str
    records_considered: int
    records_included: int
    records_excluded_opt_out: int
    file_sha256: str
    size_bytes: int
    path: Path
    file_name: str


def _audit(audit: AuditLog, action: str, entry: AuditEntry, **extra: Any) -> None:
    body = entry.model_dump(mode="json")
    body.pop("at", None)  # the log stamps its own time
    audit.append(action, **body, **extra)


def run_export(
    *,
    sub: Submission,
    submission_file: Path,
    recipient_id: str,
    requested_by: str,
    requested_form: Form | None,
    policy: SharingPolicy,
    state: StateStore,
    repo: Repository,
    audit: AuditLog,
    out_dir: Path,
    export_id: str,
    at: datetime,
) -> ExportResult:
    """Decide, audit and write one export (blocking: run it in a worker thread)."""
    if recipient_id == NHS_ENGLAND:
        raise NotAnExportRecipientError(
            "NHS England receives the submission itself (approve it); exports are for other recipients"
        )
    entries = list(repo.iter_export_manifest(sub.submission_id))
    if any(row.opt_outs is None for row in entries):
        raise ExportUnavailableError(
            "this submission was assembled before opt-out flags were recorded with its rows; request a new "
            "submission and export that one"
        )
    metas = [
        RecordMeta(record_id=row.record_key, la_code=sub.la_code, opt_outs=parse_opt_out_header(row.opt_outs or ""))
        for row in entries
    ]
    decision = plan_export(
        policy,
        recipient_id,
        metas,
        la_code=sub.la_code,
        requested_by=requested_by,
        requested_form=requested_form,
        at=at,
    )
    ids = {"submission_id": sub.submission_id, "export_id": export_id}
    if isinstance(decision, Refusal):
        _audit(audit, "export_refused", decision.audit, **ids, detail=decision.detail)
        raise ExportRefusedError(decision.reason.value, decision.detail)

    include = set(decision.include)
    included = [(row.source or "", row.event_id or "") for row in entries if row.record_key in include]
    private_dir(out_dir)
    path = out_dir / f"{export_id}.csv"
    try:
        if decision.form is Form.PSEUDONYMISED:
            sha, size, rows = _write_pseudonymised(state, sub.la_code, decision, included, path)
        else:
            if not submission_file.exists():
                raise ExportUnavailableError("the file of this submission is no longer kept")
            sha, size, rows = _write_identifiable(submission_file, entries, include, path)
    except ExportUnavailableError as exc:
        path.unlink(missing_ok=True)
        _audit(audit, "export_unavailable", decision.audit, **ids, detail=str(exc))
        raise
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    assert rows == len(decision.include)  # the file holds exactly the planned rows
    name = f"CLD_{sub.la_code}_{sub.period_start:%Y%m%d}_{sub.period_end:%Y%m%d}_{recipient_id}_{export_id[:8]}.csv"
    _audit(audit, "exported", decision.audit, **ids, file_sha256=sha, rows=rows)
    recipient = policy.find(recipient_id)
    return ExportResult(
        export_id=export_id,
        submission_id=sub.submission_id,
        la_code=sub.la_code,
        recipient_id=recipient_id,
        recipient_name=recipient.name if recipient else recipient_id,
        form=decision.form,
        legal_basis=decision.legal_basis.summary,
        records_considered=decision.audit.records_considered,
        records_included=rows,
        records_excluded_opt_out=decision.excluded_opt_out,
        file_sha256=sha,
        size_bytes=size,
        path=path,
        file_name=name,
    )


def _write_pseudonymised(
    state: StateStore, la_code: str, plan: ExportPlan, included: list[tuple[str, str]], path: Path
) -> tuple[str, int, int]:
    """``included``: the (source, event id) of each row, in file order."""
    forms = state.pseudonymised_forms(la_code, plan.recipient_id, included)
    missing = sum(1 for k in included if k not in forms)
    if missing:
        raise ExportUnavailableError(
            f"{missing} of {len(included)} record(s) have no pseudonymised form for recipient "
            f"{plan.recipient_id!r} yet: a pseudonymisation instance with purpose {plan.recipient_id!r} must "
            "process them (cld.records.pseudonymised.v1); nothing was exported"
        )
    records = [forms[k] for k in included]
    header = list(records[0]) if records else []
    if any(list(r) != header for r in records):
        raise ExportUnavailableError("the pseudonymised records do not share one set of fields; nothing was exported")
    return _write_csv(path, header, ([r.get(h) for h in header] for r in records))


def _write_identifiable(
    submission_file: Path, entries: list[ExportRow], include: set[str], path: Path
) -> tuple[str, int, int]:
    """The submission file's own rows (already formula-neutralised), those planned, in file order."""
    with submission_file.open(encoding="utf-8", newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        rows = list(reader)
    if len(rows) != len(entries):
        raise ExportUnavailableError("the submission file and its manifest disagree; nothing was exported")
    chosen = (row for row, entry in zip(rows, entries, strict=True) if entry.record_key in include)
    return _write_csv(path, header, chosen, neutralised=True)


def _write_csv(
    path: Path, header: list[str], rows: Iterator[list[Any]], *, neutralised: bool = False
) -> tuple[str, int, int]:
    digest = hashlib.sha256()
    size = n = 0
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator=LINE_TERMINATOR)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:

        def flush() -> None:
            nonlocal size
            data = buf.getvalue().encode("utf-8")
            digest.update(data)
            out.write(data)
            size += len(data)
            buf.seek(0)
            buf.truncate()

        if header:
            writer.writerow(header)
        for row in rows:
            cells = ["" if v is None else str(v) for v in row]
            writer.writerow(cells if neutralised else [neutralise(c, numeric=False) if c else "" for c in cells])
            n += 1
            if n % _FLUSH_ROWS == 0:
                flush()
        flush()
        out.flush()
        os.fsync(out.fileno())
    return digest.hexdigest(), size, n


class Exports(WorkflowParts):
    """The export use case, and the audit of refused operator actions."""

    async def export(
        self, submission_id: str, *, recipient_id: str, requested_by: str, form: Form | None = None
    ) -> ExportResult:
        """Decide (sharing policy), audit and write an export of this submission's rows to a recipient other
        than NHS England (``exports.run_export``). The caller streams ``result.path`` and deletes it."""
        sub = self.get(submission_id)
        return await asyncio.to_thread(
            run_export,
            sub=sub,
            submission_file=self.file_path(sub),
            recipient_id=recipient_id,
            requested_by=requested_by,
            requested_form=form,
            policy=self.policy,
            state=self.state,
            repo=self.repo,
            audit=self.audit,
            out_dir=self.settings.exports_dir,
            export_id=self._new_id(),
            at=self._clock(),
        )

    def audit_denied(
        self, *, operator: str, action: str, la_code: str, reason: str, submission_id: str | None = None
    ) -> None:
        """Record a refused operator action (authenticated but out of scope or not permitted)."""
        self.audit.append(
            "access_denied", submission_id=submission_id, la_code=la_code, by=operator, request=action, reason=reason
        )
