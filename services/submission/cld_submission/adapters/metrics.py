"""Domain metrics of the submission service (docs/TEAM.md, metrics contract) on an injected registry."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge

from cld_schemas.events import SubmissionEvent, SubmissionState

from ..domain.lifecycle import Submission

TRANSPORTS: Final = ("mesh", "file_export")
"""Transport names (``Transport.name``) with a series from the start."""


class SubmissionMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.transitions = Counter(
            "cld_submission_transitions_total",
            "Submission lifecycle steps taken, by LA and the state entered.",
            ["la_code", "state"],
            registry=registry,
        )
        self.submissions = Gauge(
            "cld_submissions",
            "Submissions currently in each state, by LA.",
            ["la_code", "state"],
            registry=registry,
        )
        self.mesh_send = Counter(
            "cld_mesh_send_total",
            "Submission file hand-overs to the transport (MESH or file export): success, retry, failed.",
            ["outcome"],
            registry=registry,
        )
        self.mesh_acknowledged = Counter(
            "cld_mesh_acknowledged_total",
            "Sent submissions whose delivery ended: acknowledged by the recipient, or failed.",
            ["outcome"],
            registry=registry,
        )
        self.sent_awaiting = Gauge(
            "cld_submissions_sent_by_transport",
            "Submissions in state 'sent', by LA and the transport that carried them (mesh acknowledges; "
            "file_export never does, so only mesh can be 'not acknowledged').",
            ["la_code", "transport"],
            registry=registry,
        )
        self.deadline_remaining = Gauge(
            "cld_submission_deadline_remaining_seconds",
            "Seconds until the next submission window closes (end of the deadline day, UTC; deadline rule in the "
            "service settings).",
            ["la_code"],
            registry=registry,
        )
        self.approved_for_next = Gauge(
            "cld_submission_approved_for_next_deadline",
            "1 when an approved, sent or acknowledged submission covers the quarter due next, else 0.",
            ["la_code"],
            registry=registry,
        )
        for outcome in ("success", "retry", "failed"):
            self.mesh_send.labels(outcome)
        for outcome in ("acknowledged", "failed"):
            self.mesh_acknowledged.labels(outcome)

    def observe(self, events: Iterable[SubmissionEvent]) -> None:
        for e in events:
            self.transitions.labels(e.la_code, e.state.value).inc()

    def set_counts(self, counts: Mapping[tuple[str, str], int], la_codes: Iterable[str]) -> None:
        for la in set(la_codes) | {la for la, _ in counts}:
            for state in SubmissionState:
                self.submissions.labels(la, state.value).set(counts.get((la, state.value), 0))

    def set_sent(self, submissions: Iterable[Submission], la_codes: Iterable[str]) -> None:
        """``cld_submissions_sent_by_transport``: one series per LA and known transport (zeros included, so a
        transport's series does not vanish when its last submission is acknowledged)."""
        sent: dict[tuple[str, str], int] = {}
        for s in submissions:
            if s.state is SubmissionState.SENT:
                key = (s.la_code, s.transport or "unknown")
                sent[key] = sent.get(key, 0) + 1
        transports = set(TRANSPORTS) | {t for _, t in sent}
        for la in set(la_codes) | {la for la, _ in sent}:
            for transport in transports:
                self.sent_awaiting.labels(la, transport).set(sent.get((la, transport), 0))
