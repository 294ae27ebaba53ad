"""Bench: assemble, check and send a 500,000-record submission; time and peak RSS (targets < 60 s, < 1 GB).

Two phases in separate processes so that the memory figure is that of assembly + sending alone:
1. ``populate``: synthetic validated records (``cld_synth.generator`` rows, varied ids) into a fresh state store;
2. ``run``: ``SubmissionWorkflow.request`` (stream from SQLite, dataset checks, file + SHA-256, manifest),
   approve, and send through the file-export transport, or through MESH when ``--mesh-url`` is given
   (the sandbox's canned mailboxes X26ABC1 -> X26ABC2).

    .venv/bin/python bench/bench_submission.py [--records 500000] [--mesh-url http://127.0.0.1:8700]

Prints one JSON object per phase. Timings are reported, never asserted (docs/TEAM.md).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

PERIOD_END = date(2025, 3, 31)
PERIOD_START = date(2024, 4, 1)
LA = "318"


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes


def populate(state_dir: Path, records: int) -> dict[str, Any]:
    from cld_schemas.events import Provenance, RecordValidated
    from cld_schemas.spec import Release
    from cld_submission.adapters.sqlite_record_store import StateStore
    from cld_submission.domain.records import Incoming
    from cld_synth.generator import generate_rows

    templates = [row for row, _ in generate_rows(people=1500, seed=5, period_end=PERIOD_END)]
    store = StateStore.open(state_dir)
    t0 = time.perf_counter()
    now = datetime(2025, 4, 10, tzinfo=UTC)
    batch: list[Incoming] = []
    for i in range(records):
        row = dict(templates[i % len(templates)])
        row["la_person_unique_identifier"] = f"BP{i // 2:08d}"
        row["event_reference"] = f"B{i:09d}"
        if row.get("adult_1_linked_person_id"):
            row["adult_1_linked_person_id"] = f"BP{max(0, i // 2 - 1):08d}"
        event = RecordValidated.model_construct(
            la_code=LA,
            release=Release.R2,
            provenance=Provenance.model_construct(
                source="bench", event_id=f"bench-{i}", received_at=now + timedelta(microseconds=i)
            ),
            record=row,
            findings=[],
            failed=False,
            withdrawn=False,
            validated_at=now,
        )
        batch.append(Incoming(event, "bench.validated", 0, i))
        if len(batch) == 5000:
            store.apply_many(batch)
            batch.clear()
    if batch:
        store.apply_many(batch)
    seconds = time.perf_counter() - t0
    in_scope = store.count_in_scope(LA, PERIOD_START, PERIOD_END)
    store.close()
    return {
        "phase": "populate",
        "records": records,
        "in_scope": in_scope,
        "seconds": round(seconds, 1),
        "records_per_second": round(records / seconds),
        "peak_rss_mb": round(_peak_rss_mb()),
    }


async def run(state_dir: Path, mesh_url: str | None) -> dict[str, Any]:
    import logging

    from prometheus_client import CollectorRegistry

    from cld_schemas.events import SubmissionEvent
    from cld_submission.adapters.audit_log import AuditLog
    from cld_submission.adapters.metrics import SubmissionMetrics
    from cld_submission.adapters.sqlite_record_store import StateStore
    from cld_submission.adapters.sqlite_repository import Repository
    from cld_submission.adapters.transport import (
        FileExportTransport,
        MeshSettings,
        MeshTransport,
        RetryPolicy,
        Transport,
    )
    from cld_submission.service_layer.workflow import SubmissionWorkflow, WorkflowSettings

    transport: Transport
    if mesh_url:
        transport = MeshTransport(
            MeshSettings(
                url=mesh_url,
                mailbox="X26ABC1",
                password="password",  # noqa: S106 - the sandbox's published canned password
                shared_key="Banana",
                recipient_mailbox="X26ABC2",
                workflow_id="TEST_WORKFLOW",
                verify_tls=False,
                retry=RetryPolicy(max_attempts=5, base_delay=0.5, max_delay=5, deadline=300),
            )
        )
    else:
        transport = FileExportTransport(state_dir / "export")

    async def publish(_event: SubmissionEvent) -> None:
        return None

    wf = SubmissionWorkflow(
        settings=WorkflowSettings(state_dir=state_dir, ack_poll_interval=0.5, ack_timeout=timedelta(seconds=1)),
        state=StateStore.open(state_dir),
        repo=Repository(state_dir),
        audit=AuditLog(state_dir / "audit.jsonl"),
        transport=transport,
        publish=publish,
        metrics=SubmissionMetrics(CollectorRegistry()),
        log=logging.getLogger("bench"),
    )
    t0 = time.perf_counter()
    sub, _ = await wf.request(la_code=LA, period_start=PERIOD_START, period_end=PERIOD_END, requested_by="bench")
    t_assembled = time.perf_counter()
    await wf.approve(sub.submission_id, by="bench", accept_errors=True)
    await wf.join()
    t_sent = time.perf_counter()
    final = wf.get(sub.submission_id)
    summary = wf.summary(sub.submission_id)
    return {
        "phase": "assemble+send",
        "transport": "mesh" if mesh_url else "file_export",
        "rows": sub.rows,
        "file_mb": round((sub.size_bytes or 0) / 1e6, 1),
        "assemble_and_check_seconds": round(t_assembled - t0, 1),
        "send_seconds": round(t_sent - t_assembled, 1),
        "total_seconds": round(t_sent - t0, 1),
        # Nobody acknowledges in the bench: after a 1 s acknowledgement window the state reads 'failed' for MESH
        # (the message was delivered: see message_id) and 'sent' for the file export.
        "state_after_1s_ack_window": final.state.value,
        "message_id": final.message_id,
        "dataset_checks": {c.id: c.count for c in summary.dataset_checks},
        "peak_rss_mb": round(_peak_rss_mb()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("phase", nargs="?", choices=["all", "populate", "run"], default="all")
    parser.add_argument("--records", type=int, default=500_000)
    parser.add_argument("--state-dir", type=Path)
    parser.add_argument("--mesh-url")
    args = parser.parse_args()
    if args.phase == "populate":
        print(json.dumps(populate(args.state_dir, args.records)))
        return
    if args.phase == "run":
        print(json.dumps(asyncio.run(run(args.state_dir, args.mesh_url))))
        return
    with tempfile.TemporaryDirectory(prefix="bench-submission-") as tmp:
        state_dir = Path(tmp) / "state"
        for phase in ("populate", "run"):
            cmd = [sys.executable, __file__, phase, "--records", str(args.records), "--state-dir", str(state_dir)]
            if args.mesh_url:
                cmd += ["--mesh-url", args.mesh_url]
            subprocess.run(cmd, check=True)


if __name__ == "__main__":
    main()
