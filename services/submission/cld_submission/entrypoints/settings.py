"""The settings of the submission process: one pydantic-settings object, read once from the environment by the
process entry point (``cld serve submission``) and passed down from the composition root. The MESH settings
(``CLD_MESH_*``) are nested in it; nothing else in the package reads the environment.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path
from typing import Literal

from pydantic import Field

from cld_runtime import Settings

from ..adapters.transport import MeshSettings
from ..domain.checks import PartialThresholds
from ..domain.deadlines import DeadlineRule
from ..service_layer.workflow import WorkflowSettings

SERVICE = "submission"


class SubmissionSettings(Settings):
    """Settings of the submission process (environment prefix ``CLD_``; MESH settings: ``CLD_MESH_``)."""

    service_name: str = Field(default=SERVICE, description="Service name in logs, metrics and client ids.")
    http_port: int = Field(
        default=8004,
        ge=0,
        le=65535,
        validation_alias="CLD_SUBMISSION_PORT",
        description="HTTP port (API, /metrics, /health).",
    )
    group_id: str = Field(default="cld-submission", description="Kafka consumer group of the record consumer.")
    state_dir: Path = Field(
        default=Path(".run/submission"),
        validation_alias="CLD_SUBMISSION_STATE_DIR",
        description="Directory of the record state, submissions, files and the audit log.",
    )
    database_url: str | None = Field(
        default=None,
        validation_alias="CLD_SUBMISSION_DATABASE_URL",
        description="postgresql://... to keep the record state and submissions in PostgreSQL, shared by any number "
        "of instances (migrated at start); unset: SQLite files in the state directory (one instance).",
        repr=False,
    )
    transport: Literal["mesh", "file"] = Field(
        default="file",
        validation_alias="CLD_SUBMISSION_TRANSPORT",
        description="How approved files leave: 'mesh' (settings CLD_MESH_*) or 'file' (export directory).",
    )
    export_dir: Path | None = Field(
        default=None,
        validation_alias="CLD_SUBMISSION_EXPORT_DIR",
        description="Export directory of the file transport (default: <state_dir>/export).",
    )
    ack_timeout_seconds: float = Field(
        default=5 * 24 * 3600.0,
        gt=0,
        validation_alias="CLD_SUBMISSION_ACK_TIMEOUT_SECONDS",
        description="A sent message not acknowledged within this time is marked failed (MESH keeps 5 days).",
    )
    ack_poll_seconds: float = Field(
        default=60.0,
        gt=0,
        validation_alias="CLD_SUBMISSION_ACK_POLL_SECONDS",
        description="How often the delivery status of a sent message is polled.",
    )
    gauge_interval_seconds: float = Field(
        default=60.0, gt=0, description="How often deadline gauges are refreshed and the outbox retried."
    )
    deadline_months_after_quarter_end: int = Field(
        default=1, ge=0, le=12, description="Deadline rule: last day of the month N months after quarter end."
    )
    deadline_dates: tuple[date, ...] = Field(
        default=(), description="Explicit deadlines (ISO dates); replace the rule when given."
    )
    la_codes: tuple[str, ...] = Field(
        default=(), description="LAs served (deadline gauges are reported for these even before any data)."
    )
    partial_rows_drop: float = Field(default=0.20, ge=0, le=1, description="Partial-file warning: rows drop share.")
    partial_people_drop: float = Field(default=0.20, ge=0, le=1, description="Partial-file warning: people drop share.")
    partial_months_drop: int = Field(default=1, ge=0, description="Partial-file warning: fewer months with events.")
    mesh: MeshSettings | None = Field(
        # Read here, with the rest of the settings and only when the MESH transport is chosen (CLD_MESH_*).
        default_factory=lambda data: MeshSettings() if data.get("transport") == "mesh" else None,
        description="MESH settings (environment CLD_MESH_*), when transport is 'mesh'.",
    )

    def workflow_settings(self) -> WorkflowSettings:
        return WorkflowSettings(
            state_dir=self.state_dir,
            ack_timeout=timedelta(seconds=self.ack_timeout_seconds),
            ack_poll_interval=self.ack_poll_seconds,
            deadline_rule=DeadlineRule(
                months_after_quarter_end=self.deadline_months_after_quarter_end, dates=self.deadline_dates
            ),
            partial=PartialThresholds(
                rows_drop=self.partial_rows_drop,
                people_drop=self.partial_people_drop,
                months_drop=self.partial_months_drop,
            ),
            la_codes=self.la_codes,
        )
