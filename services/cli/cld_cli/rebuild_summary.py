"""Progress bar and summaries for ``cld submission rebuild-state`` and ``rebuild-history`` (issue 12, item 4).

The rebuilds themselves are in the submission package (``cld_submission.entrypoints.rebuild``,
``.rebuild_history``); this module only shows them: a progress bar over the records the topic holds, then a
summary that says first what was rebuilt and then, as ``MISSING:`` lines, everything that could not be recovered.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

if TYPE_CHECKING:
    from cld_submission.entrypoints.rebuild import RebuildReport
    from cld_submission.entrypoints.rebuild_history import HistoryReport

_T = TypeVar("_T")


def with_progress(
    console: Console, label: str, run: Callable[[Callable[[int, int], None]], Coroutine[Any, Any, _T]]
) -> _T:
    """Run ``run(on_progress)`` to completion with a progress bar of (records read, records to read)."""
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task(label, total=None)

        def on_progress(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        return asyncio.run(run(on_progress))


def _reasons(by_reason: Mapping[str, int]) -> str:
    return ", ".join(f"{n} {reason}" for reason, n in by_reason.items()) or "none"


def print_state_report(console: Console, report: RebuildReport) -> None:
    console.print(
        f"rebuilt the record state from {report.applied} record(s) on {report.topic} "
        f"({len(report.partitions)} partition(s)); period checked from {report.period_start.isoformat()}"
    )
    console.print(
        f"unreadable records skipped: {report.unreadable} ({_reasons(report.unreadable_by_reason)}; "
        "the live consumer dead-lettered them, the state never held them)"
    )
    for p in report.partitions:
        committed = "unknown" if p.committed_offset is None else str(p.committed_offset)
        console.print(
            f"  partition {p.partition}: offsets {p.first_offset}..{p.end_offset - 1} retained, "
            f"{p.records_read} read, committed before the rebuild: {committed}"
        )
    for note in report.notes:
        console.print(f"NOTE: {note}")
    for problem in report.problems:
        console.print(f"MISSING: {problem}")
    if not report.complete:
        console.print(
            "INCOMPLETE: the rebuilt state lacks records for that period: ask the LA's source systems to resend "
            "(a full snapshot file) before assembling a submission."
        )


def print_history_report(console: Console, report: HistoryReport) -> None:
    console.print(
        f"rebuilt {report.submissions} submission(s) from {report.events_read} event(s) on {report.topic}: "
        f"{report.steps_applied} step(s) applied, {report.duplicates} duplicate(s) applied once; "
        f"audit log: {report.audit_lines} line(s), chain {'verified' if report.audit_verified else 'BROKEN'}"
    )
    for problem in report.problems:
        console.print(f"MISSING: {problem}")
    console.print("not held by the events (lost with the volume, not rebuilt):")
    for item in report.not_in_events:
        console.print(f"  - {item}")
    if not report.complete:
        console.print("INCOMPLETE: the rebuilt history lacks what is listed as MISSING above.")
