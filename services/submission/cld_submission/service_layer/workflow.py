"""The submission service layer as one object: records in (``intake``), requests and approval (``requests``),
sending and delivery tracking (``delivery``) and exports to other recipients (``exports``), over the parts the
composition root injects (``parts``). Each use case lives in its own module; this class only combines them.

No Kafka, HTTP, environment or SQL here: the composition root (``entrypoints.app.create_app``) injects the state
store, repository, audit log, transport, an event publisher and metrics; transactions go through the adapters.
"""

from __future__ import annotations

from .exports import Exports
from .intake import RecordIntake
from .parts import SubmissionNotFoundError, WorkflowSettings
from .requests import Requests

__all__ = ["SubmissionNotFoundError", "SubmissionWorkflow", "WorkflowSettings"]


class SubmissionWorkflow(RecordIntake, Requests, Exports):
    """Every use case of the submission service (built once per process by the composition root)."""
