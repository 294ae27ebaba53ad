"""Requests and approval: assembling a submission's file and manifest from the record state (one unit of work of
the repository: ``Repository.manifest``), its dataset checks and DQ summary, the lifecycle decision (new, repeated,
resubmission), and an operator's approval, which starts delivery. Heavy work (assembling a 500k-row file) runs in
a worker thread; the event loop only orchestrates.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from ..adapters.submission_file import AssembledFile, sha256_of, write_submission_file
from ..domain.checks import (
    DatasetChecker,
    Diff,
    ManifestEntry,
    Severity,
    SubmissionProfile,
    compare_with_previous,
    diff_checks,
    diff_manifests,
    left_out_check,
    left_out_of,
)
from ..domain.identity import Kind
from ..domain.lifecycle import (
    Existing,
    Submission,
    TransitionRefusedError,
    advance,
    approve,
    check_period,
    decide_request,
    new_submission,
)
from ..domain.records import RowFindings, StoredRecord
from ..domain.report_page import render_submission_report
from ..domain.summary import DQSummary
from .delivery import Delivery
from .parts import SERVICE_ACTOR, S, SubmissionNotFoundError


@dataclass(frozen=True)
class _Built:
    file: AssembledFile
    checker: DatasetChecker


class Requests(Delivery):
    """The request and approval use cases (approval hands the submission to delivery)."""

    def summary(self, submission_id: str) -> DQSummary:
        self.get(submission_id)
        body = self.repo.get_summary(submission_id)
        if body is None:
            raise SubmissionNotFoundError(submission_id)
        return DQSummary.model_validate_json(body)

    def report_page(self, submission_id: str) -> bytes:
        """The submission's DQ report as one self-contained HTML page (``domain.report_page``). Blocking: run it in a
        worker thread."""
        sub = self.get(submission_id)
        summary = self.summary(submission_id)
        return render_submission_report(sub, summary, self.repo.iter_row_findings(submission_id))

    async def request(
        self, *, la_code: str, period_start: date, period_end: date, requested_by: str
    ) -> tuple[Submission, bool]:
        """Assemble, check and record a submission; returns (submission, created). Idempotent by content."""
        if not requested_by.strip():
            raise TransitionRefusedError("a submission must name who requested it")
        check_period(period_start, period_end, today=self._clock().date())  # PeriodError: 422
        async with self._lock:
            new_id = self._new_id()
            path = self.settings.files_dir / f"{new_id}.csv"
            today = self._clock().date()
            try:
                built = await asyncio.to_thread(self._build, new_id, path, la_code, period_start, period_end, today)
                history = self.repo.history(la_code)
                decision = decide_request(
                    history,
                    la_code=la_code,
                    period_start=period_start,
                    period_end=period_end,
                    file_sha256=built.file.sha256,
                )
            except BaseException:
                await asyncio.to_thread(self._discard, new_id, path)
                raise
            if isinstance(decision, Existing):
                await asyncio.to_thread(self._discard, new_id, path)
                existing = decision.submission
                self.audit.append(
                    "request_repeated",
                    submission_id=existing.submission_id,
                    la_code=la_code,
                    by=requested_by,
                    file_sha256=built.file.sha256,
                    rows=built.file.rows,
                    detail="same LA, period and content: the existing submission is returned",
                )
                return existing, False

            previous = self._previous_sent(history)
            diff: Diff | None = None
            prev_profile: SubmissionProfile | None = None
            if previous is not None:
                diff = await asyncio.to_thread(
                    lambda: diff_manifests(
                        self.repo.iter_manifest(previous.submission_id),
                        self.repo.iter_manifest(new_id),
                        previous_submission_id=previous.submission_id,
                    )
                )
                prev_body = self.repo.get_summary(previous.submission_id)
                if prev_body is not None:
                    prev_profile = DQSummary.model_validate_json(prev_body).profile
            profile = built.checker.profile()
            left_out = await asyncio.to_thread(
                lambda: left_out_of(
                    self.state.iter_left_out(la_code, period_start, period_end),
                    in_file=built.file.rows,
                    period_start=period_start,
                    period_end=period_end,
                )
            )
            left_check = left_out_check(left_out)
            checks = [
                *built.checker.finish(),
                *([left_check] if left_check is not None else []),
                *compare_with_previous(profile, prev_profile, self.settings.partial),
                *(diff_checks(diff) if diff is not None else []),
            ]
            errors = sum(c.severity is Severity.ERROR for c in checks)
            warnings = sum(c.severity is Severity.WARNING for c in checks)
            failures = next((c.count for c in checks if c.id == "DS-RECORD-FAILURES"), 0)
            summary = DQSummary(
                submission_id=new_id,
                la_code=la_code,
                period_start=period_start,
                period_end=period_end,
                rows=built.file.rows,
                file_sha256=built.file.sha256,
                size_bytes=built.file.size_bytes,
                rows_with_failures=failures,
                opt_out_rows=built.file.opt_out_rows,
                record_findings=built.checker.record_findings(),
                dataset_checks=checks,
                errors=errors,
                warnings=warnings,
                profile=profile,
                diff=diff,
                previous_submission_id=previous.submission_id if previous else None,
                left_out=left_out,
                row_findings_kept=True,
            )
            self.repo.put_summary(new_id, summary.model_dump_json())

            at = self._clock()
            sub, e1 = new_submission(
                submission_id=new_id,
                la_code=la_code,
                period_start=period_start,
                period_end=period_end,
                requested_by=requested_by,
                at=at,
                version=decision.version,
                supersedes=decision.supersedes,
            )
            file_name = f"CLD_{la_code}_{period_start:%Y%m%d}_{period_end:%Y%m%d}_v{decision.version}_{new_id[:8]}.csv"
            sub, e2 = advance(
                sub,
                S.ASSEMBLED,
                at=at,
                by=SERVICE_ACTOR,
                file_sha256=built.file.sha256,
                rows=built.file.rows,
                size_bytes=built.file.size_bytes,
                file_name=file_name,
            )
            sub, e3 = advance(
                sub,
                S.CHECKED,
                at=at,
                by=SERVICE_ACTOR,
                detail=f"{errors} dataset error(s), {warnings} warning(s); "
                f"{failures} row(s) with record-level failures (included)",
            )
            changed = [sub]
            events = [e1, e2, e3]
            for old in decision.supersede:
                old_new, ev = advance(
                    old,
                    S.SUPERSEDED,
                    at=at,
                    by=requested_by,
                    superseded_by=new_id,
                    detail=f"superseded by version {decision.version} ({new_id})",
                )
                changed.append(old_new)
                events.append(ev)
            if not self.repo.save(changed, events, expected={o.submission_id: o.state for o in decision.supersede}):
                await asyncio.to_thread(self._discard, new_id, path)
                raise TransitionRefusedError(
                    "an earlier version of this submission changed while this one was assembled (approved on "
                    "another instance?); request it again"
                )
            self.audit.append(
                "requested",
                submission_id=new_id,
                la_code=la_code,
                period_start=period_start.isoformat(),
                period_end=period_end.isoformat(),
                by=requested_by,
                version=decision.version,
                supersedes=decision.supersedes,
                file_sha256=built.file.sha256,
                rows=built.file.rows,
                dataset_errors=errors,
                dataset_warnings=warnings,
                rows_with_failures=failures,
            )
            for old in decision.supersede:
                self.audit.append(
                    "superseded",
                    submission_id=old.submission_id,
                    la_code=la_code,
                    by=requested_by,
                    superseded_by=new_id,
                )
            self.metrics.observe(events)
        await self.after_change()
        return sub, True

    def _build(self, new_id: str, path: Path, la_code: str, start: date, end: date, today: date) -> _Built:
        checker = DatasetChecker(period_start=start, period_end=end, import_date=today)
        with self.repo.manifest(new_id) as manifest:
            row = 0

            def on_row(r: StoredRecord) -> None:
                nonlocal row
                row += 1  # the data row of the file, as the checks number it (1 = first after the header)
                checker.add(r)
                if r.findings:
                    notes = r.finding_notes if len(r.finding_notes) == len(r.findings) else ()
                    manifest.add_row_findings(
                        RowFindings(
                            row,
                            r.record.get("event_reference"),
                            [
                                (fld, rule, validity, *(notes[i] if notes else ("", "", "")))
                                for i, (fld, rule, validity) in enumerate(r.findings)
                            ],
                        )
                    )
                open_service = r.kind is Kind.SERVICE and (r.derived_end is None or r.derived_end > end)
                manifest.add(
                    ManifestEntry(r.record_key, r.content_hash, open_service),
                    event_id=r.event_id,
                    source=r.source,
                    opt_outs=",".join(sorted(f.value for f in r.opt_outs)),
                )

            file = write_submission_file(
                self.state.iter_in_scope(la_code, start, end),
                path,
                period_start=start,
                period_end=end,
                on_row=on_row,
            )
        return _Built(file=file, checker=checker)

    def _discard(self, new_id: str, path: Path) -> None:
        self.repo.delete_manifest(new_id)
        path.unlink(missing_ok=True)

    @staticmethod
    def _previous_sent(history: list[Submission]) -> Submission | None:
        sent = [s for s in history if s.state in (S.SENT, S.ACKNOWLEDGED)]
        return max(sent, key=lambda s: (s.updated_at, s.version)) if sent else None

    async def approve(self, submission_id: str, *, by: str, accept_errors: bool = False) -> Submission:
        async with self._lock:
            sub = self.get(submission_id)
            summary = self.summary(submission_id)
            if sub.state is S.CHECKED and summary.errors and not accept_errors:
                raise TransitionRefusedError(
                    f"{summary.errors} dataset check(s) at error level; review them and approve with "
                    "accept_errors to send anyway"
                )
            if sub.state is S.CHECKED:
                on_disk = await asyncio.to_thread(sha256_of, self.file_path(sub))
                if on_disk != sub.file_sha256:
                    raise TransitionRefusedError("the assembled file on disk does not match its recorded SHA-256")
            new, ev = approve(sub, by=by, at=self._clock())
            if not self.repo.save_if(new, ev, expected=sub.state):
                # Another instance moved it in the meantime (approved it too): answer as a second approval would.
                approve(self.get(submission_id), by=by, at=self._clock())  # raises as a second approval does
                raise TransitionRefusedError(f"submission {submission_id} changed while being approved")
            self.audit.append(
                "approved",
                submission_id=submission_id,
                la_code=new.la_code,
                by=new.approved_by,
                file_sha256=new.file_sha256,
                rows=new.rows,
                accepted_errors=summary.errors if accept_errors else 0,
            )
            self.metrics.observe([ev])
        await self.after_change()
        self._start_delivery(new.submission_id)
        return new
