"""``cld submission``: request, inspect, approve and export submissions through the running service's API.

Base URL: ``--url`` or ``CLD_SUBMISSION_URL`` (default http://127.0.0.1:8004).
Operator key (``cld tenants add-operator``): ``CLD_OPERATOR_KEY`` or ``--key-file FILE`` (never on the command
line: argv shows in the process list and shell history); sent as ``Authorization: Bearer``. The service records
the authenticated operator as requester and approver. Without a key only an open-mode service answers.
Exit codes: 0 done; 1 refused or not found (the service said why); 2 bad usage; 3 service not reachable or
answering with a server error.
"""

from __future__ import annotations

import hashlib
import os
import textwrap
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import httpx
import typer
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from cld_runtime.files import AtomicFile

DEFAULT_URL = "http://127.0.0.1:8004"
EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_INCOMPLETE = 4
"""A rebuild finished but could not recover everything (rebuild-state, rebuild-history)."""

submission_app = typer.Typer(
    help="Submissions to NHS England: request, show the DQ summary, approve, follow, export.", no_args_is_help=True
)
out = Console()
err = Console(stderr=True)

UrlOption = Annotated[
    str,
    typer.Option("--url", envvar="CLD_SUBMISSION_URL", help="Base URL of the submission service."),
]
KeyFileOption = Annotated[
    Path | None,
    typer.Option(
        "--key-file",
        help="File holding your operator key (default: env CLD_OPERATOR_KEY).",
        exists=True,
        dir_okay=False,
        readable=True,
    ),
]
ENV_OPERATOR_KEY = "CLD_OPERATOR_KEY"


def register(app: typer.Typer) -> None:
    app.add_typer(submission_app, name="submission")


def _fail(message: str, code: int) -> NoReturn:
    err.print(f"[red]error:[/red] {message}")
    raise typer.Exit(code)


def _operator_key(key_file: Path | None) -> str | None:
    if key_file is not None:
        key = key_file.read_text(encoding="utf-8").strip()
        if not key:
            _fail(f"{key_file} holds no key", EXIT_USAGE)
        return key
    return os.environ.get(ENV_OPERATOR_KEY, "").strip() or None


def _auth(key_file: Path | None) -> dict[str, str]:
    key = _operator_key(key_file)
    return {"Authorization": f"Bearer {key}"} if key else {}


def _open_out(path: Path) -> AtomicFile:
    """The safe writer of ``--out`` (``cld_runtime.files``), or a clear error and exit 2."""
    from cld_runtime.files import AtomicFile, FileWriteError

    try:
        return AtomicFile(path, binary=True)
    except FileWriteError as exc:
        _fail(str(exc), EXIT_USAGE)


def _call(
    method: str, url: str, path: str, *, key_file: Path | None = None, timeout: float = 60.0, **kwargs: Any
) -> httpx.Response:
    try:
        with httpx.Client(base_url=url, timeout=httpx.Timeout(timeout, connect=5.0), headers=_auth(key_file)) as client:
            response = client.request(method, path, **kwargs)
    except httpx.ConnectError:
        _fail(f"the submission service is not reachable at {url} (is it running? set --url/CLD_SUBMISSION_URL)", 3)
    except httpx.TimeoutException:
        _fail(f"the submission service at {url} did not answer within {timeout:.0f} s", EXIT_UNREACHABLE)
    except httpx.HTTPError as exc:
        _fail(f"talking to {url} failed ({type(exc).__name__})", EXIT_UNREACHABLE)
    if response.status_code >= 500:
        _fail(f"the submission service failed (HTTP {response.status_code})", EXIT_UNREACHABLE)
    if response.status_code >= 400:
        detail: Any
        try:
            detail = response.json().get("detail", response.text)
        except ValueError:
            detail = response.text
        if isinstance(detail, list):  # FastAPI validation errors
            detail = "; ".join(f"{'.'.join(str(x) for x in d.get('loc', []))}: {d.get('msg')}" for d in detail)
        if response.status_code == 401:
            detail = f"{detail}; set {ENV_OPERATOR_KEY} or pass --key-file"
        _fail(f"{detail} (HTTP {response.status_code})", EXIT_REFUSED)
    return response


def _period(value: str) -> tuple[date, date]:
    try:
        start_text, end_text = value.split(":", 1)
        start, end = date.fromisoformat(start_text.strip()), date.fromisoformat(end_text.strip())
    except ValueError:
        _fail("--period must be START:END as ISO dates, e.g. 2024-04-01:2025-03-31", EXIT_USAGE)
    if end < start:
        _fail("--period ends before it starts", EXIT_USAGE)
    return start, end


def _default_operator() -> str:
    return os.environ.get("CLD_OPERATOR") or os.environ.get("USER") or ""


def _submission_table(sub: dict[str, Any], title: str) -> Table:
    t = Table(title=title, show_header=False, box=box.SIMPLE, pad_edge=False, title_justify="left")
    t.add_column("field", style="bold", no_wrap=True)
    t.add_column("value", overflow="fold")
    for key in (
        "submission_id",
        "la_code",
        "period_start",
        "period_end",
        "state",
        "version",
        "supersedes",
        "superseded_by",
        "requested_by",
        "approved_by",
        "rows",
        "file_sha256",
        "file_name",
        "transport",
        "message_id",
        "updated_at",
        "detail",
    ):
        value = sub.get(key)
        if value is not None:
            t.add_row(key, str(value))
    problem = sub.get("delivery_problem")
    if problem:  # a transport outage (e.g. MESH down) while delivering: visible here, not only in the log
        t.add_row("last transport error", f"{problem.get('error')} at {problem.get('at')}")
        t.add_row("failed attempts", str(problem.get("attempts")))
        t.add_row("next retry", str(problem.get("next_retry_at") or "none (the delivery has failed)"))
    return t


@submission_app.command("request")
def request(
    la: Annotated[str, typer.Option("--la", help="The LA's 3-digit code.")],
    period: Annotated[str, typer.Option("--period", help="START:END, ISO dates (a rolling 12 months).")],
    by: Annotated[
        str,
        typer.Option(
            "--by", help="Who asks. With an operator key: your operator name (default). Open mode: $CLD_OPERATOR/$USER."
        ),
    ] = "",
    url: UrlOption = DEFAULT_URL,
    key_file: KeyFileOption = None,
) -> None:
    """Assemble and check a submission; prints its id (the same id again when nothing changed)."""
    start, end = _period(period)
    body: dict[str, Any] = {"la_code": la, "period_start": start.isoformat(), "period_end": end.isoformat()}
    who = by or (None if _operator_key(key_file) else _default_operator())
    if who:
        body["requested_by"] = who
    answer = _call("POST", url, "/v1/submissions", key_file=key_file, json=body, timeout=600.0).json()
    sub = answer["submission"]
    note = "" if answer["created"] else " (unchanged since this submission was requested: not a new one)"
    err.print(f"{sub['state']}: {sub['rows']} rows, version {sub['version']}{note}")
    out.print(sub["submission_id"], highlight=False)


@submission_app.command("show")
def show(submission_id: str, url: UrlOption = DEFAULT_URL, key_file: KeyFileOption = None) -> None:
    """The DQ summary: record-level failures by field and rule, dataset checks, diff against the last one."""
    detail = _call("GET", url, f"/v1/submissions/{submission_id}", key_file=key_file).json()
    _print_detail(detail)


def _width() -> int:
    """The width ``show`` lays its text out for: the terminal's (COLUMNS), at most 100, at least 40."""
    return max(40, min(out.width, 100))


def _para(text: str, *, indent: str = "", rest: str | None = None) -> None:
    """One paragraph, wrapped at word boundaries to the terminal (long references break only where they must);
    printed as plain text (no markup: an explanation's brackets stay as they are)."""
    lines = textwrap.wrap(
        text,
        width=_width(),
        initial_indent=indent,
        subsequent_indent=indent if rest is None else rest,
        break_on_hyphens=False,
    )
    for line in lines or [indent]:
        out.print(line, markup=False, highlight=False, soft_wrap=True)


def _print_left_out(left: dict[str, Any] | None) -> None:
    """Which held records are not in the file and why (issue 13 item 5): counts and references, never values."""
    if not left:
        return
    if not left["left_out"]:
        _para(f"All {left['held']} records held for the LA are in the file.")
        return
    _para(f"{left['held']} records held, {left['in_file']} in the file, {left['left_out']} left out of the period:")
    for g in left["by_reason"]:
        refs = ", ".join(g["examples"])
        more = f" and {g['count'] - len(g['examples'])} more" if g["count"] > len(g["examples"]) else ""
        _para(f"{g['count']} {g['explanation']} ({g['rule']}): {refs}{more}", indent="  ", rest="    ")


_SEVERITY_COLOUR = {"error": "red", "warning": "yellow", "info": "cyan"}


def _print_checks(checks: list[dict[str, Any]]) -> None:
    """The dataset checks, one block each (a headline, then the explanation, details and example rows/keys,
    wrapped): a table of seven columns does not fit an 80-column terminal."""
    out.print(Text("Dataset checks", style="bold"))
    if not checks:
        _para("  none")
    for c in checks:
        sev = str(c["severity"])
        head = Text("  ")
        head.append(sev.upper(), style=_SEVERITY_COLOUR.get(sev, "white"))
        head.append(f" {c['id']} ({c['rule']}): {c['count']}")
        out.print(head, highlight=False, soft_wrap=True)
        _para(str(c["explanation"]), indent="    ")
        details = c.get("details") or {}
        if details:
            _para("details: " + ", ".join(f"{k}={v}" for k, v in details.items()), indent="    ", rest="      ")
        examples = list(c.get("examples") or [])[:5]
        if examples:
            _para("e.g. rows/keys: " + ", ".join(examples), indent="    ", rest="      ")


def _short_sha(sha: str | None) -> str | None:
    return f"{sha[:16]}... (full below)" if sha and len(sha) > 16 else sha


def _print_detail(detail: dict[str, Any]) -> None:
    sub, summary = detail["submission"], detail["summary"]
    sha = sub.get("file_sha256")
    out.print(_submission_table({**sub, "file_sha256": _short_sha(sha)}, "Submission"))
    if sha:
        out.print(f"File SHA-256: {sha}", markup=False, highlight=False, soft_wrap=True)
    _para(
        f"{summary['rows']} rows, {summary['rows_with_failures']} with record-level failures (included as they are), "
        f"{summary['opt_out_rows']} flagged opt-out/objection (included: the opt-out does not apply to this flow)."
    )
    _print_left_out(summary.get("left_out"))
    _print_checks(summary["dataset_checks"])
    findings = summary["record_findings"]
    if findings:
        t = Table(title="Record-level failures by field and rule", box=box.SIMPLE_HEAD, pad_edge=False)
        t.add_column("Field", overflow="fold", ratio=3)
        t.add_column("Rule", overflow="fold", ratio=1)
        t.add_column("Validity", overflow="fold", ratio=2)
        t.add_column("Records", justify="right", no_wrap=True)
        for f in findings[:40]:
            t.add_row(f["field"], f["rule"], f["validity"], str(f["records"]))
        out.print(t, width=_width())
        if len(findings) > 40:
            _para(f"... and {len(findings) - 40} more (field, rule) pairs: see the report page (cld submission report)")
    diff = summary.get("diff")
    if diff:
        _para(
            f"Since submission {diff['previous_submission_id']}: +{diff['added']} added, -{diff['removed']} removed, "
            f"~{diff['changed']} changed, {diff['unchanged']} unchanged; "
            f"{diff['services_vanished_open']} open service(s) vanished."
        )
    else:
        _para("No earlier sent submission to compare with.")
    if summary["errors"]:
        out.print(f"[red]{summary['errors']} error-level dataset check(s):[/red] approve needs --accept-errors.")
    _para(f"The full DQ report page: cld submission report {sub['submission_id']} --out report.html")


@submission_app.command("approve")
def approve_cmd(
    submission_id: str,
    by: Annotated[
        str,
        typer.Option(
            "--by",
            help="The approver. With an operator key you are the approver (optional; must be your name). "
            "Required in open mode.",
        ),
    ] = "",
    accept_errors: Annotated[
        bool, typer.Option("--accept-errors", help="Send although dataset checks found errors.")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    url: UrlOption = DEFAULT_URL,
    key_file: KeyFileOption = None,
) -> None:
    """Approve a checked submission for sending, after its DQ summary is shown."""
    if not by.strip() and not _operator_key(key_file):
        _fail(f"no operator key ({ENV_OPERATOR_KEY} or --key-file); in open mode say who approves with --by", 2)
    detail = _call("GET", url, f"/v1/submissions/{submission_id}", key_file=key_file).json()
    _print_detail(detail)
    as_whom = f" as {by}" if by.strip() else ""
    if not yes and not typer.confirm(f"Send submission {submission_id} to NHS England{as_whom}?"):
        _fail("not approved", EXIT_REFUSED)
    body: dict[str, Any] = {"accept_errors": accept_errors}
    if by.strip():
        body["by"] = by.strip()
    sub = _call("POST", url, f"/v1/submissions/{submission_id}/approve", key_file=key_file, json=body).json()
    out.print(f"{sub['submission_id']} {sub['state']} by {sub['approved_by']}", highlight=False)


@submission_app.command("status")
def status(submission_id: str, url: UrlOption = DEFAULT_URL, key_file: KeyFileOption = None) -> None:
    """Where a submission is now (state, MESH message id, last step's detail)."""
    sub = _call("GET", url, f"/v1/submissions/{submission_id}/status", key_file=key_file).json()
    out.print(_submission_table(sub, "Status"))


@submission_app.command("history")
def history(
    la: Annotated[str, typer.Option("--la", help="The LA's 3-digit code.")],
    url: UrlOption = DEFAULT_URL,
    key_file: KeyFileOption = None,
) -> None:
    """Every submission of an LA, oldest first."""
    subs = _call("GET", url, "/v1/submissions", key_file=key_file, params={"la": la}).json()
    t = Table(title=f"Submissions of LA {la}")
    for col in ("Id", "Period", "Version", "State", "Rows", "Requested by", "Approved by", "Message id", "Updated"):
        t.add_column(col)
    for s in subs:
        t.add_row(
            s["submission_id"],
            f"{s['period_start']}..{s['period_end']}",
            str(s["version"]),
            s["state"],
            str(s.get("rows") or ""),
            s["requested_by"],
            s.get("approved_by") or "",
            s.get("message_id") or "",
            s["updated_at"],
        )
    out.print(t)


@submission_app.command("export")
def export(
    submission_id: str,
    out_path: Annotated[Path, typer.Option("--out", help="Where to write the file.")],
    url: UrlOption = DEFAULT_URL,
    key_file: KeyFileOption = None,
) -> None:
    """Write exactly the file that was (or would be) sent, and check its SHA-256."""
    sub = _call("GET", url, f"/v1/submissions/{submission_id}/status", key_file=key_file).json()
    from cld_runtime.files import FileWriteError, os_reason

    digest = hashlib.sha256()
    target = _open_out(out_path)  # refused before downloading: a symlink, FIFO, folder or missing folder
    try:
        with (
            httpx.Client(base_url=url, timeout=httpx.Timeout(600.0, connect=5.0), headers=_auth(key_file)) as client,
            client.stream("GET", f"/v1/submissions/{submission_id}/file") as response,
        ):
            if response.status_code != 200:
                _fail(f"the file is not available (HTTP {response.status_code})", EXIT_REFUSED)
            for block in response.iter_bytes():
                digest.update(block)
                target.file.write(block)
        if sub.get("file_sha256") and digest.hexdigest() != sub["file_sha256"]:
            _fail("the downloaded file does not match the submission's SHA-256", EXIT_UNREACHABLE)
        target.commit()
    except httpx.HTTPError as exc:
        _fail(f"downloading the file failed ({type(exc).__name__})", EXIT_UNREACHABLE)
    except OSError as exc:
        _fail(f"cannot write {out_path}: {os_reason(exc)}", EXIT_USAGE)
    except FileWriteError as exc:
        _fail(str(exc), EXIT_USAGE)
    finally:
        target.abort()  # a no-op after commit
    err.print(f"wrote {out_path} ({sub.get('rows')} rows, sha256 {digest.hexdigest()})")


@submission_app.command("report")
def report(
    submission_id: str,
    out_path: Annotated[Path, typer.Option("--out", help="Where to write the page (HTML).")],
    url: UrlOption = DEFAULT_URL,
    key_file: KeyFileOption = None,
) -> None:
    """Write the submission's DQ report page (self-contained HTML, the page of `cld validate --html`): every
    failed field of its rows with the row as Excel shows it and the rule, its dataset checks, the records left out.
    """
    from cld_runtime.files import FileWriteError, check_target, write_bytes

    try:
        check_target(out_path)  # refused before asking: a symlink, FIFO, folder or missing folder
    except FileWriteError as exc:
        _fail(str(exc), EXIT_USAGE)
    response = _call("GET", url, f"/v1/submissions/{submission_id}/report", key_file=key_file, timeout=600.0)
    if not response.headers.get("content-type", "").startswith("text/html"):
        _fail("the service did not answer with the report page (is it an older version?)", EXIT_UNREACHABLE)
    try:
        write_bytes(out_path, response.content)
    except FileWriteError as exc:
        _fail(str(exc), EXIT_USAGE)
    err.print(f"wrote {out_path} ({len(response.content):,} bytes): open it in a browser")


@submission_app.command("export-to")
def export_to(
    submission_id: str,
    recipient: Annotated[str, typer.Option("--recipient", help="Recipient id in the sharing policy (e.g. an ICB).")],
    out_path: Annotated[Path, typer.Option("--out", help="Where to write the export (CSV).")],
    form: Annotated[
        str | None, typer.Option("--form", help="identifiable or pseudonymised (default: the recipient's form).")
    ] = None,
    url: UrlOption = DEFAULT_URL,
    key_file: KeyFileOption = None,
) -> None:
    """Export a submission's rows to a recipient other than NHS England, as the sharing policy allows.

    Refused without a legal basis recorded for that recipient and LA (the refusal is audited); records flagged
    with a national data opt-out or objection are left out; pseudonymised unless the policy says otherwise.
    """
    body: dict[str, Any] = {"recipient": recipient}
    if form is not None:
        if form not in ("identifiable", "pseudonymised"):
            _fail("--form must be identifiable or pseudonymised", EXIT_USAGE)
        body["form"] = form
    response = _call(
        "POST", url, f"/v1/submissions/{submission_id}/exports", key_file=key_file, json=body, timeout=600.0
    )
    data = response.content
    expected = response.headers.get("x-content-sha256", "")
    if expected and hashlib.sha256(data).hexdigest() != expected:
        _fail("the downloaded export does not match its SHA-256", EXIT_UNREACHABLE)
    from cld_runtime.files import FileWriteError, write_bytes

    try:
        write_bytes(out_path, data)
    except FileWriteError as exc:
        _fail(str(exc), EXIT_USAGE)
    h = response.headers
    err.print(
        f"wrote {out_path}: {h.get('x-records-included')} of {h.get('x-records-considered')} rows, "
        f"{h.get('x-records-excluded-opt-out')} left out (opt-out/objection), form {h.get('x-export-form')}, "
        f"for {h.get('x-export-recipient')}; export {h.get('x-export-id')}, sha256 {expected}"
    )


@submission_app.command("rebuild-state")
def rebuild_state_cmd(
    state_dir: Annotated[Path, typer.Option("--state-dir", help="The (stopped) service's state directory.")],
) -> None:
    """Rebuild the record state from the validated topic's beginning (run while the service is stopped).

    Exits 4 when something could not be recovered (each listed as MISSING), 3 when Kafka cannot be reached.
    """
    import sqlite3

    from aiokafka.errors import KafkaError

    from cld_submission.adapters.storage import fault_cause, folder_problem
    from cld_submission.entrypoints.rebuild import rebuild_state  # local: only this command needs the service package
    from cld_submission.entrypoints.settings import SubmissionSettings

    from .rebuild_summary import print_state_report, with_progress

    settings = SubmissionSettings(state_dir=state_dir)
    try:
        report = with_progress(err, "records", lambda p: rebuild_state(settings, on_progress=p))
    except (sqlite3.Error, OSError) as exc:  # e.g. a read-only or full state directory: one line, no traceback
        _fail(f"the state directory {state_dir} cannot be written: {folder_problem(state_dir) or fault_cause(exc)}", 2)
    except KafkaError as exc:
        _fail(f"Kafka at {settings.kafka_bootstrap_servers} cannot be read ({type(exc).__name__})", EXIT_UNREACHABLE)
    print_state_report(err, report)
    if not report.complete:
        raise typer.Exit(EXIT_INCOMPLETE)


@submission_app.command("rebuild-history")
def rebuild_history_cmd(
    state_dir: Annotated[
        Path,
        typer.Option("--state-dir", help="An empty state directory (the service stopped; the old one moved away)."),
    ],
) -> None:
    """Rebuild the submission history and the audit chain from cld.submissions.v1 (run while the service is stopped).

    Fills an empty repository and writes a new hash-chained audit log, verified. Refused (exit 1) when the
    directory already holds submissions or an audit log; exits 4 when events could not be recovered.
    """
    import sqlite3

    from aiokafka.errors import KafkaError

    from cld_submission.adapters.storage import fault_cause, folder_problem
    from cld_submission.entrypoints.rebuild_history import HistoryNotEmptyError, rebuild_history
    from cld_submission.entrypoints.settings import SubmissionSettings

    from .rebuild_summary import print_history_report, with_progress

    settings = SubmissionSettings(state_dir=state_dir)
    try:
        report = with_progress(err, "lifecycle events", lambda p: rebuild_history(settings, on_progress=p))
    except HistoryNotEmptyError as exc:
        _fail(str(exc), EXIT_REFUSED)
    except (sqlite3.Error, OSError) as exc:
        _fail(f"the state directory {state_dir} cannot be written: {folder_problem(state_dir) or fault_cause(exc)}", 2)
    except KafkaError as exc:
        _fail(f"Kafka at {settings.kafka_bootstrap_servers} cannot be read ({type(exc).__name__})", EXIT_UNREACHABLE)
    print_history_report(err, report)
    if not report.complete:
        raise typer.Exit(EXIT_INCOMPLETE)
