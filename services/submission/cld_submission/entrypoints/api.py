"""The submission service's HTTP API (FastAPI): its request and answer models, operator authentication and the
routes under ``/v1``. Each route checks who asks, calls the service layer (``SubmissionWorkflow``) and maps its
refusals to HTTP statuses; no business rule lives here.

Every ``/v1`` call is made by an operator: ``Authorization: Bearer <operator key>`` (``cld tenants add-operator``),
read by FastAPI's ``HTTPBearer`` security class (so the OpenAPI document declares the ``OperatorKey`` scheme on
every ``/v1`` route), authenticated against the tenants registry (``cld_governance.tenancy.authenticate_operator``,
401 otherwise) and authorised for the submission's LA and the action (``authorise_operator``: view, request,
approve, export; 403 with the reason otherwise, and the refusal is audited). Listings are filtered to the
operator's LAs. The requester and approver are the authenticated operator. ``CLD_TENANCY_MODE=open`` (no
registry; a demo on synthetic data) keeps the unauthenticated behaviour, logged as a warning at start. Each route
documents the 401/403/404/409 (and 410) answers it can give (``responses=``).
"""

from __future__ import annotations

import asyncio
from datetime import date
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Query, Request, Response
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field
from starlette.background import BackgroundTask

from cld_governance.sharing import Form
from cld_governance.tenancy import (
    Operator,
    OperatorAction,
    Registry,
    authenticate_operator,
    authorise_operator,
    sees_la,
)
from cld_runtime import metrics_body

from ..domain.lifecycle import PeriodError, Submission, TransitionRefusedError
from ..domain.summary import DQSummary
from ..service_layer.exports import ExportRefusedError, ExportUnavailableError, NotAnExportRecipientError
from ..service_layer.workflow import SubmissionNotFoundError, SubmissionWorkflow

# -- API models ---------------------------------------------------------------------------------------


class RequestSubmission(BaseModel):
    model_config = ConfigDict(extra="forbid")

    la_code: str = Field(pattern=r"^\d{3}$", description="The LA's 3-digit code.")
    period_start: date
    period_end: date
    requested_by: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="Who asks. Optional: the authenticated operator; when given it must be their name (403 "
        "otherwise). Required in open tenancy mode.",
    )


class ApproveSubmission(BaseModel):
    model_config = ConfigDict(extra="forbid")

    by: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="The approver. Optional: the authenticated operator; when given it must be their name (403 "
        "otherwise). Required in open tenancy mode.",
    )
    accept_errors: bool = Field(default=False, description="Send although dataset checks found errors.")


class RequestExport(BaseModel):
    model_config = ConfigDict(extra="forbid")

    recipient: str = Field(
        pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$", description="Recipient id in the sharing policy (not nhs-england)."
    )
    form: Form | None = Field(
        default=None, description="Default: the recipient's form (pseudonymised unless the policy says otherwise)."
    )


class RequestAnswer(BaseModel):
    submission: Submission
    created: bool = Field(description="False when the same LA, period and content was requested before.")


class StateAnswer(BaseModel):
    la_code: str
    period_start: date
    period_end: date
    in_scope: int


class SubmissionDetail(BaseModel):
    submission: Submission
    summary: DQSummary


class Problem(BaseModel):
    """An error answer (FastAPI's ``{"detail": ...}``): a reason code and a sentence, never a record value."""

    detail: str


_ERRORS: dict[int, str] = {
    401: "No valid operator key (``Authorization: Bearer <operator key>``).",
    403: "The operator may not do this for this LA (the refusal is audited), or named someone else.",
    404: "No such submission.",
    409: "The submission's state does not allow this now.",
    410: "The submission's file is no longer kept.",
}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The documented error answers of a route (``responses=``), from the statuses it can give. Always JSON, also
    on routes whose success is a page or a file (so not ``model=``, which takes the route's media type)."""
    content = {"application/json": {"schema": Problem.model_json_schema()}}
    return {status: {"description": _ERRORS[status], "content": content} for status in statuses}


# -- operator authentication ----------------------------------------------------------------------------

operator_key = HTTPBearer(
    scheme_name="OperatorKey",
    description="An operator key (``cld tenants add-operator``), sent as ``Authorization: Bearer <key>``. Not needed "
    "in open tenancy mode (synthetic-data demos).",
    auto_error=False,  # a missing or other-scheme header is answered below (401), as before; open mode needs none
)


def _caller(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(operator_key)]
) -> Operator:
    """The authenticated operator (401 without a valid key; the open operator in open mode)."""
    tenants: Registry = request.app.state.tenants
    operator = authenticate_operator(tenants, credentials.credentials if credentials is not None else None)
    if operator is None:
        raise HTTPException(
            status_code=401,
            detail="unknown_operator: send a valid operator key as 'Authorization: Bearer <key>'",
            headers={"WWW-Authenticate": 'Bearer realm="cld-submission"'},
        )
    return operator


Caller = Annotated[Operator, Depends(_caller)]


def add_routes(app: FastAPI, wf: SubmissionWorkflow, tenants: Registry) -> None:
    """The submission API under ``/v1`` and ``/metrics`` on ``app``; every ``/v1`` route needs an operator."""

    def refused(exc: TransitionRefusedError) -> HTTPException:
        return HTTPException(status_code=409, detail=str(exc))

    def not_found(submission_id: str) -> HTTPException:
        return HTTPException(status_code=404, detail="no such submission")

    def guard(op: Operator, la_code: str, action: OperatorAction, submission_id: str | None = None) -> None:
        decision = authorise_operator(op, la_code, action)
        if not decision.allowed:
            reason = decision.reason.value if decision.reason else "refused"
            wf.audit_denied(
                operator=op.name, action=action.value, la_code=la_code, reason=reason, submission_id=submission_id
            )
            raise HTTPException(status_code=decision.http_status, detail=f"{reason}: {decision.detail}")

    def acting_as(op: Operator, named: str | None, role: str) -> str:
        """The name recorded as requester/approver: the authenticated operator (``named`` must agree)."""
        if tenants.open_mode:
            if not named:
                raise HTTPException(status_code=422, detail=f"open tenancy mode: name the {role} in the body")
            return named
        if named is not None and named != op.name:
            raise HTTPException(
                status_code=403,
                detail=f"operator_mismatch: the {role} is the authenticated operator {op.name!r}, "
                "not the name given in the body",
            )
        return op.name

    def load(submission_id: str, op: Operator, action: OperatorAction) -> Submission:
        try:
            sub = wf.get(submission_id)
        except SubmissionNotFoundError:
            raise not_found(submission_id) from None
        guard(op, sub.la_code, action, submission_id)
        return sub

    @app.post("/v1/submissions", status_code=201, response_model=RequestAnswer, responses=errors(401, 403, 409))
    async def request_submission(body: RequestSubmission, response: Response, op: Caller) -> RequestAnswer:
        guard(op, body.la_code, OperatorAction.REQUEST_SUBMISSION)
        who = acting_as(op, body.requested_by, "requester")
        try:
            sub, created = await wf.request(
                la_code=body.la_code,
                period_start=body.period_start,
                period_end=body.period_end,
                requested_by=who,
            )
        except PeriodError as exc:
            raise HTTPException(status_code=422, detail=f"period: {exc}") from None
        except TransitionRefusedError as exc:
            raise refused(exc) from None
        if not created:
            response.status_code = 200
        return RequestAnswer(submission=sub, created=created)

    @app.get("/v1/submissions", response_model=list[Submission], responses=errors(401, 403))
    async def history(op: Caller, la: Annotated[str | None, Query(pattern=r"^\d{3}$")] = None) -> list[Submission]:
        """Submissions, oldest first: of one LA (403 when out of the operator's scope) or of every LA the
        operator sees."""
        if la is not None:
            guard(op, la, OperatorAction.VIEW)
            return wf.history(la)
        return [s for s in wf.history(None) if sees_la(op, s.la_code)]

    @app.get("/v1/submissions/{submission_id}", response_model=SubmissionDetail, responses=errors(401, 403, 404))
    async def show(submission_id: str, op: Caller) -> SubmissionDetail:
        sub = load(submission_id, op, OperatorAction.VIEW)
        try:
            return SubmissionDetail(submission=sub, summary=wf.summary(submission_id))
        except SubmissionNotFoundError:
            raise not_found(submission_id) from None

    @app.get(
        "/v1/submissions/{submission_id}/report",
        response_class=HTMLResponse,
        responses={
            200: {"content": {"text/html": {}}, "description": "The DQ report page (self-contained)."},
            **errors(401, 403, 404),
        },
    )
    async def report(submission_id: str, op: Caller) -> HTMLResponse:
        """The submission's DQ report as one self-contained HTML page (the page of ``cld validate --html``):
        every failed field of its rows with the row as Excel shows it and the rule, its dataset checks and the
        held records left out of the period. No value of a personal field; no script, no external URL."""
        load(submission_id, op, OperatorAction.VIEW)
        try:
            page = await asyncio.to_thread(wf.report_page, submission_id)
        except SubmissionNotFoundError:
            raise not_found(submission_id) from None
        return HTMLResponse(
            page,
            headers={
                "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src data:",
                "X-Content-Type-Options": "nosniff",
                "Cache-Control": "no-store",
            },
        )

    @app.get("/v1/submissions/{submission_id}/status", response_model=Submission, responses=errors(401, 403, 404))
    async def status(submission_id: str, op: Caller) -> Submission:
        """The submission's state; while it is being delivered, also the last transport error and the next
        retry (``delivery_problem``), so an outage of MESH shows here, not only in the log."""
        return wf.with_delivery(load(submission_id, op, OperatorAction.VIEW))

    @app.post(
        "/v1/submissions/{submission_id}/approve", response_model=Submission, responses=errors(401, 403, 404, 409)
    )
    async def approve(submission_id: str, body: ApproveSubmission, op: Caller) -> Submission:
        load(submission_id, op, OperatorAction.APPROVE_SUBMISSION)
        who = acting_as(op, body.by, "approver")
        try:
            return await wf.approve(submission_id, by=who, accept_errors=body.accept_errors)
        except SubmissionNotFoundError:
            raise not_found(submission_id) from None
        except TransitionRefusedError as exc:
            raise refused(exc) from None

    @app.post(
        "/v1/submissions/{submission_id}/exports",
        response_class=FileResponse,
        responses={200: {"content": {"text/csv": {}}, "description": "The export file."}, **errors(401, 403, 404, 409)},
    )
    async def export(submission_id: str, body: RequestExport, op: Caller) -> FileResponse:
        """Export this submission's rows to a recipient other than NHS England, as the sharing policy allows:
        403 (audited) without a legal basis; opt-out/objection-flagged rows left out; pseudonymised by default.
        The answer is the file (CSV); headers carry the export id, SHA-256, form and counts."""
        load(submission_id, op, OperatorAction.EXPORT)
        try:  # the exporter is the authenticated operator ('open' in open mode)
            result = await wf.export(submission_id, recipient_id=body.recipient, requested_by=op.name, form=body.form)
        except ExportRefusedError as exc:
            raise HTTPException(status_code=403, detail=f"{exc.reason}: {exc.detail}") from None
        except ExportUnavailableError as exc:
            raise HTTPException(status_code=409, detail=str(exc)) from None
        except NotAnExportRecipientError as exc:
            raise HTTPException(status_code=422, detail=str(exc)) from None
        return FileResponse(
            result.path,
            media_type="text/csv; charset=utf-8",
            filename=result.file_name,
            headers={
                "X-Export-Id": result.export_id,
                "X-Content-SHA256": result.file_sha256,
                "X-Export-Form": result.form.value,
                "X-Export-Recipient": result.recipient_id,
                "X-Records-Considered": str(result.records_considered),
                "X-Records-Included": str(result.records_included),
                "X-Records-Excluded-Opt-Out": str(result.records_excluded_opt_out),
            },
            background=BackgroundTask(result.path.unlink, missing_ok=True),
        )

    @app.get("/v1/state/{la_code}", response_model=StateAnswer, responses=errors(401, 403))
    async def state(la_code: str, period_start: date, period_end: date, op: Caller) -> StateAnswer:
        """How many records of the LA are in scope for a period now (no record values)."""
        if not la_code.isascii() or not la_code.isdigit() or len(la_code) != 3:
            raise HTTPException(status_code=422, detail="the LA code is 3 digits")
        guard(op, la_code, OperatorAction.VIEW)
        if period_end < period_start:
            raise HTTPException(status_code=422, detail="period_end is before period_start")
        n = await asyncio.to_thread(wf.state.count_in_scope, la_code, period_start, period_end)
        return StateAnswer(la_code=la_code, period_start=period_start, period_end=period_end, in_scope=n)

    @app.get(
        "/v1/submissions/{submission_id}/file",
        response_class=FileResponse,
        responses={
            200: {"content": {"text/csv": {}}, "description": "The submission file."},
            **errors(401, 403, 404, 410),
        },
    )
    async def file(submission_id: str, op: Caller) -> FileResponse:
        sub = load(submission_id, op, OperatorAction.VIEW)
        path = wf.file_path(sub)
        if not path.exists():
            raise HTTPException(status_code=410, detail="the file of this submission is no longer kept")
        return FileResponse(
            path,
            media_type="text/csv; charset=utf-8",
            filename=sub.file_name or path.name,
            headers={"X-Content-SHA256": sub.file_sha256 or ""},
        )

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        body, content_type = metrics_body(app.state.registry)
        return Response(body, media_type=content_type)
