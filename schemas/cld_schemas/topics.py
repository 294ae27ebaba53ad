"""Kafka topic names: the public, versioned contract. A breaking change is a new topic version."""

from typing import Final

RAW: Final = "cld.events.raw.v1"
"""Source systems publish one CLD record per message here. Key: the LA code. Value: a JSON object of spec
fields by snake_case name. Optional headers: ``cld-source`` (source system id), ``cld-event-id`` (idempotency)."""

VALIDATED: Final = "cld.records.validated.v1"
"""Every readable record with its DQ findings (``RecordValidated``). Invalid values are reported, never dropped."""

PSEUDONYMISED: Final = "cld.records.pseudonymised.v1"
"""The pseudonymised form of each validated record (``RecordPseudonymised``)."""

SUBMISSIONS: Final = "cld.submissions.v1"
"""Submission lifecycle events (``SubmissionEvent``): requested, assembled, checked, approved, sent, ..."""

DEADLETTER: Final = "cld.deadletter.v1"
"""What could not be processed (``DeadLetter``): a pointer to the original message and the reason. It never
copies the payload (which may hold personal data); the original stays on its topic for re-driving."""

ALL: Final = (RAW, VALIDATED, PSEUDONYMISED, SUBMISSIONS, DEADLETTER)

# Message headers of the raw-topic contract.
HEADER_SOURCE: Final = "cld-source"
HEADER_EVENT_ID: Final = "cld-event-id"
HEADER_RECEIVED_AT: Final = "cld-received-at"
HEADER_ACTION: Final = "cld-action"
"""Optional: ``upsert`` (default) or ``withdraw`` (the source withdraws a record it sent earlier)."""
HEADER_RELEASE: Final = "cld-release"
"""Optional: ``r1`` or ``r2``, the specification release the record is written to (overrides the release in
force for its reporting period and the source's configured release)."""


def prefixed(prefix: str, topic: str) -> str:
    """Topic name with a deployment prefix (tests use per-test prefixes to keep real-broker runs apart)."""
    return f"{prefix}{topic}" if prefix else topic
