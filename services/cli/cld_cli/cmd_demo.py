"""``cld demo``: the end-to-end demo used by ``make run``, against running services.

Generates a synthetic LA dataset (``cld_synth.generator.generate_rows``), uploads it as a CSV file to the ingest
API (authenticated with the source key ``deploy/local/up.sh`` issued: ``.run/local/source-keys.json``),
waits (bounded, with a progress bar) until every row has come out validated and pseudonymised (read
from the topics with a plain aiokafka consumer), prints the DQ summary and a few pseudonymised rows, then
asks the submission service to submit the period (request -> show -> approve -> sent/acknowledged).
Run as ``cld demo`` or ``python -m cld_cli.cmd_demo``.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import gzip
import hashlib
import io
import json
import os
import sys
import uuid
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cld_schemas import topics
from cld_schemas.spec import load_spec
from cld_synth.generator import default_period_end, period_start_for

console = Console()
PERIOD_END = default_period_end(date.today())
"""A rolling 12 months ending at the last quarter end, as an LA's quarterly submission covers."""
PERIOD_START = period_start_for(PERIOD_END)
LOCAL_RUN_DIR = Path(".run/local")
"""Where ``make up`` (deploy/local/up.sh) writes its keys (0600), ports and Kafka address, under the repository."""
DEFAULT_KEYS_FILE = LOCAL_RUN_DIR / "source-keys.json"
DEFAULT_OPERATOR = "borough-officer"
"""The example registry's LA operator for LA 318, who requests and approves (a hub operator may not approve)."""
DEFAULT_SOURCE = "example-borough-case-system"
"""The example registry's source for LA 318 (deploy/config/tenants.example.json)."""


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)


@dataclass(frozen=True)
class LocalRun:
    """What ``make up`` left under its run directory for the demo: keys, service ports and the Kafka address.

    Found from ``CLD_RUN_DIR`` or by looking for ``.run/local`` in the working directory and its parents (so
    ``cld demo`` works from anywhere in the repository after ``make up``, without copying a key)."""

    run_dir: Path | None

    @classmethod
    def find(cls, start: Path | None = None, env: Mapping[str, str] | None = None) -> LocalRun:
        env = os.environ if env is None else env
        if env.get("CLD_RUN_DIR"):
            return cls(Path(env["CLD_RUN_DIR"]))
        here = (start or Path.cwd()).resolve()
        for folder in (here, *here.parents):
            if (folder / LOCAL_RUN_DIR).is_dir():
                return cls(folder / LOCAL_RUN_DIR)
        return cls(None)

    def file(self, name: str) -> Path | None:
        return None if self.run_dir is None else self.run_dir / name

    @property
    def source_keys(self) -> Path | None:
        return self.file("source-keys.json")

    @property
    def operator_keys(self) -> Path | None:
        return self.file("operator-keys.json")

    def url(self, service: str) -> str | None:
        """http://127.0.0.1:<port> of a service ``make up`` started (its ``<service>.port`` file), else None."""
        path = self.file(f"{service}.port")
        try:
            port = path.read_text(encoding="utf-8").strip() if path is not None else ""
        except OSError:
            return None
        return f"http://127.0.0.1:{port}" if port.isdigit() else None

    def bootstrap(self) -> str | None:
        """KAFKA_BOOTSTRAP_SERVERS as ``make up`` wrote it (``kafka.env``), else None."""
        path = self.file("kafka.env")
        try:
            text = path.read_text(encoding="utf-8") if path is not None else ""
        except OSError:
            return None
        for line in text.splitlines():
            name, _, value = line.partition("=")
            if name.strip() == "KAFKA_BOOTSTRAP_SERVERS" and value.strip():
                return value.strip()
        return None


def synthetic_csv(*, people: int, seed: int, la_code: str) -> tuple[str, int]:
    """The dataset as an LA file (spec headers), and how many distinct rows it holds."""
    from cld_synth.generator import generate_rows

    spec = load_spec()
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([f.header for f in spec.fields])
    distinct: set[str] = set()
    for row, _errors in generate_rows(
        people=people, seed=seed, period_end=PERIOD_END, error_rate=0.05, la_code=la_code
    ):
        writer.writerow([row.get(f.name) or "" for f in spec.fields])
        distinct.add(json.dumps({k: v for k, v in row.items() if v}, sort_keys=True))
    return out.getvalue(), len(distinct)


def _read_keys(keys_file: Path) -> dict[str, Any]:
    """The keys file as JSON (a clear exit, never a traceback, when it cannot be read)."""
    try:
        keys = json.loads(keys_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        console.print(f"[red]cannot read the keys file {keys_file}[/] ({type(exc).__name__})")
        raise typer.Exit(2) from None
    if not isinstance(keys, dict):
        console.print(f"[red]the keys file {keys_file} is not a JSON object of name -> key[/]")
        raise typer.Exit(2)
    return keys


def source_key(keys_file: Path | None, source_id: str) -> str | None:
    """The API key of ``source_id`` from the keys file ``cld tenants init`` wrote (None without the file)."""
    if keys_file is None or not keys_file.is_file():
        return None
    keys = _read_keys(keys_file)
    if source_id not in keys:
        console.print(f"[red]no key for source {source_id!r} in {keys_file}[/]")
        raise typer.Exit(2)
    return str(keys[source_id])


async def wait_for(
    bootstrap: str,
    topic: str,
    *,
    source: str,
    since: datetime,
    expected: int,
    wait_seconds: float,
    progress: Progress,
    label: str,
) -> list[dict[str, Any]]:
    """Events of this demo run (its source, received since it started) on ``topic``, one per event id."""
    from aiokafka import AIOKafkaConsumer

    task = progress.add_task(label, total=expected)
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None)
    await consumer.start()
    by_id: dict[str, dict[str, Any]] = {}
    try:
        async with asyncio.timeout(wait_seconds):
            while len(by_id) < expected:
                batch = await consumer.getmany(timeout_ms=250)
                for records in batch.values():
                    for r in records:
                        event = json.loads(r.value)
                        prov = event.get("provenance", {})
                        if prov.get("source") == source and datetime.fromisoformat(prov["received_at"]) >= since:
                            by_id.setdefault(event["provenance"]["event_id"], event)  # dedupe by event id
                progress.update(task, completed=len(by_id))
    finally:
        await consumer.stop()
    return list(by_id.values())


def print_dq_summary(validated: list[dict[str, Any]]) -> None:
    failed = sum(1 for v in validated if v["failed"])
    console.print(f"\n[bold]DQ summary[/]: {len(validated)} rows, {failed} rows with failures")
    by_rule = Counter((f["field"], f["rule"], f["validity"]) for v in validated for f in v["findings"])
    table = Table("Field", "Rule", "Validity", "Failures")
    for (field_name, rule, validity), n in by_rule.most_common(20):
        table.add_row(field_name, rule, validity, str(n))
    console.print(table)


def print_pseudonymised(pseudo: list[dict[str, Any]], n: int = 3) -> None:
    cols = [
        "la_person_unique_identifier_pseudo",
        "nhs_number_pseudo",
        "age_band_period_end",
        "gender",
        "postcode_sector",
        "event_type",
        "event_start_date",
    ]
    table = Table(*cols, title="A few pseudonymised rows")
    for p in pseudo[:n]:
        table.add_row(*[str(p["record"].get(c) or "")[:16] for c in cols])
    console.print(table)


async def submit(
    client: httpx.AsyncClient,
    *,
    la_code: str,
    expected_rows: int,
    wait_seconds: float,
    nhse: NhsEnglandStandIn | None = None,
) -> None:
    """Request, show, approve and follow a submission, as an LA operator would (``cld submission ...``)."""
    body = {"la_code": la_code, "period_start": PERIOD_START.isoformat(), "period_end": PERIOD_END.isoformat()}
    async with asyncio.timeout(wait_seconds):
        while True:  # the submission service may still be reading the validated topic
            r = await client.post("/v1/submissions", json=body)
            if r.status_code >= 400:
                console.print(f"[red]submission request refused ({r.status_code})[/]: {r.text[:300]}")
                return
            sub = r.json()["submission"]
            detail = (await client.get(f"/v1/submissions/{sub['submission_id']}")).json()
            rows = detail["submission"].get("rows") or 0
            if rows >= expected_rows or sub["state"] not in ("requested", "assembled", "checked"):
                break
            await asyncio.sleep(1)  # polling interval of a bounded wait
        summary = detail["summary"]
        console.print(
            f"\n[bold]Submission[/] {sub['submission_id']} for LA {la_code}, "
            f"{PERIOD_START:%d/%m/%Y}-{PERIOD_END:%d/%m/%Y}: {sub['state']}, {rows} rows "
            f"({summary['rows_with_failures']} with DQ failures, reported not dropped; "
            f"{summary['opt_out_rows']} opt-out-flagged rows included, as the law requires), "
            f"file SHA-256 {summary['file_sha256'][:16]}..."
        )
        checks = Table(title="Dataset checks before sending")
        for col in ("Check", "Severity", "Count", "Explanation"):
            checks.add_column(col)
        for c in summary["dataset_checks"][:12]:
            checks.add_row(c["id"], c["severity"], str(c["count"]), c["explanation"])
        console.print(checks)
        if sub["state"] == "checked":
            r = await client.post(f"/v1/submissions/{sub['submission_id']}/approve", json={"accept_errors": True})
            if r.status_code >= 400:
                console.print(f"[red]approve refused ({r.status_code})[/]: {r.text[:300]}")
                return
            console.print(f"approved by {r.json().get('approved_by')}")
        else:  # idempotent: the same LA, period and content was requested before
            console.print(f"this exact file was submitted before (state {sub['state']}): it is not sent twice")
        while True:
            status = (await client.get(f"/v1/submissions/{sub['submission_id']}/status")).json()
            if status["state"] in ("sent", "acknowledged", "failed"):
                break
            await asyncio.sleep(0.5)  # polling interval of a bounded wait
        console.print(
            f"submission {status['submission_id']}: [bold]{status['state']}[/] via {status.get('transport')}, "
            f"message {status.get('message_id')}"
        )
    if status["state"] == "sent" and nhse is not None:
        received = await asyncio.to_thread(nhse.receive, status["message_id"])
        same = "matches" if received == status.get("file_sha256") else "DOES NOT MATCH"
        console.print(
            f"NHS England's mailbox ({nhse.mailbox}, MESH sandbox) downloaded message {status['message_id']} "
            f"and acknowledged it; its SHA-256 {same} the approved file"
        )
    if status["state"] == "sent":
        try:  # the service polls MESH for the delivery status; the file transport never acknowledges
            async with asyncio.timeout(min(wait_seconds, 60.0)):
                while status["state"] == "sent":
                    await asyncio.sleep(0.5)  # polling interval of a bounded wait
                    status = (await client.get(f"/v1/submissions/{sub['submission_id']}/status")).json()
        except TimeoutError:
            console.print("no acknowledgement yet (the file transport has none)")
    console.print(f"[bold]Receipt[/]: submission {status['submission_id']} is [bold]{status['state']}[/]")
    history = (await client.get("/v1/submissions", params={"la": la_code})).json()
    console.print(f"audit trail: {len(history)} submission(s) on record for LA {la_code}")


class NhsEnglandStandIn:
    """Plays NHS England's side in the MESH sandbox: download the message and acknowledge it (demo only)."""

    def __init__(self, url: str, mailbox: str, password: str, shared_key: str) -> None:
        self.url, self.mailbox, self.password, self.shared_key = url, mailbox, password, shared_key

    def receive(self, message_id: str) -> str:

        from mesh_client import MeshClient

        with MeshClient(
            self.url, self.mailbox, self.password, shared_key=self.shared_key.encode(), verify=False
        ) as mesh:
            mesh.handshake()
            with contextlib.closing(mesh.retrieve_message(message_id)) as msg:
                data = msg.read()
            mesh.acknowledge_message(message_id)
        if data[:2] == b"\x1f\x8b":  # gzip magic: compressed in transit
            data = gzip.decompress(data)
        return hashlib.sha256(data).hexdigest()


def operator_key(keys_file: Path | None, name: str) -> str | None:
    """An operator's key from the file `cld tenants init --operator-keys-out` wrote (None in open mode)."""
    if keys_file is None or not keys_file.is_file():
        return None
    keys = _read_keys(keys_file)
    return str(keys[name]) if name in keys else None


def missing_key_hint(role: str, keys_file: Path | None, *, name: str | None = None) -> str:
    """What to do when no key of ``role`` (source/operator) was found: where the demo looked, and how to get one."""
    where = (
        f"{keys_file} has no key for {name!r}"
        if name and keys_file is not None and keys_file.is_file()
        else (f"no {role} keys file at {keys_file}" if keys_file is not None else f"no {role} keys file found")
    )
    option = "--keys-file" if role == "source" else "--operator-keys-file"
    return (
        f"[yellow]{where}[/]: run `make up` in the repository (it writes .run/local/{role}-keys.json, mode 0600), "
        f"or pass {option} (set CLD_RUN_DIR when the run directory is elsewhere)"
    )


async def run_demo(
    *,
    ingest_url: str,
    submission_url: str | None,
    bootstrap: str,
    prefix: str,
    people: int,
    seed: int,
    la_code: str,
    wait_seconds: float,
    keys_file: Path | None = DEFAULT_KEYS_FILE,
    source_id: str = DEFAULT_SOURCE,
    operator_keys_file: Path | None = None,
    operator: str = DEFAULT_OPERATOR,
    nhse: NhsEnglandStandIn | None = None,
) -> None:
    text, distinct = synthetic_csv(people=people, seed=seed, la_code=la_code)
    key = source_key(keys_file, source_id)
    headers = {"content-type": "text/csv"}
    if key is not None:  # tenancy enforced: the source is the key's holder
        headers["Authorization"] = f"Bearer {key}"
        source = source_id
    else:  # open mode (CLD_TENANCY_MODE=open): the ingest takes the client's X-CLD-Source
        source = f"demo-{uuid.uuid4().hex[:8]}"
        headers["X-CLD-Source"] = source
    since = datetime.now(UTC)
    async with httpx.AsyncClient(base_url=ingest_url, timeout=120) as client:
        r = await client.post("/v1/uploads", params={"la": la_code}, content=text.encode(), headers=headers)
    if r.status_code != 202:
        console.print(f"[red]upload refused ({r.status_code})[/]: {r.text[:500]}")
        if r.status_code in (401, 403) and key is None:
            console.print(missing_key_hint("source", keys_file))
        raise typer.Exit(1)
    console.print(f"uploaded {r.json()['rows']} rows for LA {la_code} (upload {r.json()['upload_id']})")
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
    ) as progress:
        validated, pseudo = await asyncio.gather(
            wait_for(
                bootstrap,
                prefix + topics.VALIDATED,
                source=source,
                since=since,
                expected=distinct,
                wait_seconds=wait_seconds,
                progress=progress,
                label="validated",
            ),
            wait_for(
                bootstrap,
                prefix + topics.PSEUDONYMISED,
                source=source,
                since=since,
                expected=distinct,
                wait_seconds=wait_seconds,
                progress=progress,
                label="pseudonymised",
            ),
        )
    print_dq_summary(validated)
    print_pseudonymised(pseudo)
    if submission_url:
        try:
            op_key = operator_key(operator_keys_file, operator)
            if op_key is None and key is not None:  # tenancy is enforced (a source key was needed)
                console.print(missing_key_hint("operator", operator_keys_file, name=operator))
            op_headers = {"Authorization": f"Bearer {op_key}"} if op_key else {}
            async with httpx.AsyncClient(base_url=submission_url, timeout=60, headers=op_headers) as client:
                await submit(client, la_code=la_code, expected_rows=distinct, wait_seconds=wait_seconds, nhse=nhse)
        except (httpx.HTTPError, TimeoutError) as exc:
            console.print(f"[yellow]submission step not completed[/] ({type(exc).__name__})")


def demo(
    ingest_url: Annotated[
        str | None, typer.Option(envvar="CLD_INGEST_URL", help="Default: the port `make up` used, else 8001.")
    ] = None,
    submission_url: Annotated[
        str | None, typer.Option(envvar="CLD_SUBMISSION_URL", help="Default: the port `make up` used, else 8004.")
    ] = None,
    no_submission: Annotated[bool, typer.Option("--no-submission", help="Skip the submission step.")] = False,
    bootstrap: Annotated[
        str | None,
        typer.Option(envvar="KAFKA_BOOTSTRAP_SERVERS", help="Default: the Kafka `make up` used, else 127.0.0.1:9092."),
    ] = None,
    topic_prefix: Annotated[str, typer.Option(envvar="CLD_TOPIC_PREFIX")] = "",
    people: Annotated[int, typer.Option(min=1)] = 200,
    seed: int = 7,
    la_code: Annotated[str, typer.Option("--la")] = "318",
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each stage.")] = 180.0,
    keys_file: Annotated[
        Path | None,
        typer.Option(
            envvar="CLD_SOURCE_KEYS_FILE",
            help="Source keys from `cld tenants init` (0600). Default: the one `make up` wrote (.run/local).",
        ),
    ] = None,
    source_id: Annotated[str, typer.Option("--source", help="The source to send as (its key is used).")] = (
        DEFAULT_SOURCE
    ),
    operator_keys_file: Annotated[
        Path | None,
        typer.Option(
            envvar="CLD_OPERATOR_KEYS_FILE",
            help="Operator keys from `cld tenants init` (0600). Default: the one `make up` wrote (.run/local).",
        ),
    ] = None,
    operator: Annotated[str, typer.Option(help="The LA operator who requests and approves.")] = DEFAULT_OPERATOR,
    nhse_mesh_url: Annotated[
        str | None,
        typer.Option(envvar="CLD_DEMO_NHSE_MESH_URL", help="MESH sandbox URL: play NHS England's mailbox there."),
    ] = None,
    nhse_mailbox: Annotated[str, typer.Option(envvar="CLD_DEMO_NHSE_MAILBOX")] = "X26ABC2",
) -> None:
    """Send a synthetic LA dataset through the running mesh and show what came out (make run).

    After `make up` it needs no option: the keys, ports and Kafka address `make up` wrote under .run/local (found
    from here or a parent folder, or CLD_RUN_DIR) are the defaults; options and environment variables win."""
    local = LocalRun.find()
    try:
        asyncio.run(
            run_demo(
                ingest_url=ingest_url or local.url("ingest") or "http://127.0.0.1:8001",
                submission_url=None
                if no_submission
                else submission_url or local.url("submission") or ("http://127.0.0.1:8004"),
                bootstrap=bootstrap or local.bootstrap() or "127.0.0.1:9092",
                prefix=topic_prefix,
                people=people,
                seed=seed,
                la_code=la_code,
                wait_seconds=timeout,
                keys_file=keys_file or local.source_keys,
                source_id=source_id,
                operator_keys_file=operator_keys_file or local.operator_keys,
                operator=operator,
                # The sandbox's canned receiver mailbox and its published test credentials (mesh-sandbox).
                nhse=NhsEnglandStandIn(nhse_mesh_url, nhse_mailbox, "password", "Banana") if nhse_mesh_url else None,
            )
        )
    except KeyboardInterrupt:
        console.print("interrupted")
        raise typer.Exit(130) from None
    except TimeoutError:
        console.print("[red]timed out waiting for the records to flow through[/]")
        raise typer.Exit(1) from None


if __name__ == "__main__":  # python -m cld_cli.cmd_demo (make run; works before main.py lists this module)
    _app = typer.Typer(add_completion=False)
    _app.command()(demo)
    sys.exit(_app())

__all__ = ["demo", "register"]
