"""Bench: assemble, check and send a 500,000-record submission; time and peak RSS (issue 11 targets for assembly,
checks and file: < 20 s and < 300 MB).

Two phases in separate processes so that the memory figure is that of assembly + sending alone:
1. ``populate``: synthetic validated records (``cld_synth.generator`` rows, varied ids) into a fresh state store;
2. ``run``: ``SubmissionWorkflow.request`` (stream from SQLite, dataset checks, file + SHA-256, manifest),
   approve, and send through the file-export transport, or through MESH when ``--mesh-url`` is given
   (the sandbox's canned mailboxes X26ABC1 -> X26ABC2).

    .venv/bin/python bench/bench_submission.py [--records 500000] [--mesh-url http://127.0.0.1:8700]
        [--database-url postgresql://...]

With ``--database-url`` (a PostgreSQL server whose user may create databases) the record state and the
submissions are in a fresh database on that server, created for the run and dropped after (issue 12; the schema
is migrated at open), else in SQLite files in a temporary state folder.

The ``run`` phase also reports the CPU seconds of assembly (all threads of the process: the machine is shared, so
wall time alone says little) and, as a floor in the same run (``bench/floors.py``), a plain ``csv.reader`` loop over
the assembled file: ``assemble_vs_csv_floor`` is assembly's wall time over the floor's.

Prints one JSON object per phase. Timings are reported, never asserted (docs/TEAM.md).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.floors import csv_floor

PERIOD_END = date(2025, 3, 31)
PERIOD_START = date(2024, 4, 1)
LA = "318"


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes


def populate(state_dir: Path, records: int, database_url: str | None = None) -> dict[str, Any]:
    from cld_schemas.events import Provenance, RecordValidated
    from cld_schemas.spec import Release
    from cld_submission.adapters.stores import open_record_store
    from cld_submission.domain.records import Incoming
    from cld_synth.generator import generate_rows

    templates = [row for row, _ in generate_rows(people=1500, seed=5, period_end=PERIOD_END)]
    store = open_record_store(state_dir, database_url)
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
        "engine": "postgresql" if database_url else "sqlite",
        "records": records,
        "in_scope": in_scope,
        "seconds": round(seconds, 1),
        "records_per_second": round(records / seconds),
        "peak_rss_mb": round(_peak_rss_mb()),
    }


async def run(state_dir: Path, mesh_url: str | None, database_url: str | None = None) -> dict[str, Any]:
    import logging

    from prometheus_client import CollectorRegistry

    from cld_schemas.events import SubmissionEvent
    from cld_submission.adapters.audit_log import AuditLog
    from cld_submission.adapters.metrics import SubmissionMetrics
    from cld_submission.adapters.stores import open_record_store, open_repository
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
        state=open_record_store(state_dir, database_url),
        repo=open_repository(state_dir, database_url),
        audit=AuditLog(state_dir / "audit.jsonl"),
        transport=transport,
        publish=publish,
        metrics=SubmissionMetrics(CollectorRegistry()),
        log=logging.getLogger("bench"),
    )
    t0 = time.perf_counter()
    c0 = time.process_time()
    sub, _ = await wf.request(la_code=LA, period_start=PERIOD_START, period_end=PERIOD_END, requested_by="bench")
    t_assembled = time.perf_counter()
    cpu_assembled = time.process_time() - c0
    rss_assembled = _peak_rss_mb()
    await wf.approve(sub.submission_id, by="bench", accept_errors=True)
    await wf.join()
    t_sent = time.perf_counter()
    final = wf.get(sub.submission_id)
    summary = wf.summary(sub.submission_id)
    _floor_rows, floor_seconds = await asyncio.to_thread(csv_floor, wf.file_path(final))
    return {
        "phase": "assemble+send",
        "engine": "postgresql" if database_url else "sqlite",
        "transport": "mesh" if mesh_url else "file_export",
        "rows": sub.rows,
        "file_mb": round((sub.size_bytes or 0) / 1e6, 1),
        "assemble_and_check_seconds": round(t_assembled - t0, 1),
        "assemble_and_check_cpu_seconds": round(cpu_assembled, 1),
        "peak_rss_mb_after_assembly": round(rss_assembled),
        "csv_floor_seconds": round(floor_seconds, 2),
        "assemble_vs_csv_floor": round((t_assembled - t0) / floor_seconds, 2),
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
    parser.add_argument("--database-url", help="PostgreSQL for the state and submissions (default: SQLite files)")
    args = parser.parse_args()
    if args.phase == "populate":
        print(json.dumps(populate(args.state_dir, args.records, args.database_url)))
        return
    if args.phase == "run":
        print(json.dumps(asyncio.run(run(args.state_dir, args.mesh_url, args.database_url))))
        return
    with tempfile.TemporaryDirectory(prefix="bench-submission-") as tmp, _fresh_database(args.database_url) as url:
        state_dir = Path(tmp) / "state"
        for phase in ("populate", "run"):
            cmd = [sys.executable, __file__, phase, "--records", str(args.records), "--state-dir", str(state_dir)]
            if args.mesh_url:
                cmd += ["--mesh-url", args.mesh_url]
            if url:
                cmd += ["--database-url", url]
            if subprocess.run(cmd, check=False).returncode != 0:  # not check=True: its error would print the URL
                raise SystemExit(f"bench_submission.py {phase} failed (see above)")


@contextlib.contextmanager
def _fresh_database(server: str | None) -> Iterator[str | None]:
    """A new database on ``server`` for one run (dropped after), or None for SQLite."""
    if not server:
        yield None
        return
    import uuid
    from urllib.parse import urlsplit, urlunsplit

    import psycopg

    name = f"bench_submission_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield urlunsplit(urlsplit(server)._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(server, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
