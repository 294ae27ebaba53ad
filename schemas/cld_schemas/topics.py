"""Kafka topic names: the public, versioned contract. A breaking change is a new topic version."""

from collections.abc import Mapping
from typing import Final

from cld_schemas import contract
from cld_schemas.contract import MessageContract

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

# Message headers of the raw-topic contract (defined in cld_schemas.contract; re-exported here).
HEADER_SOURCE: Final = contract.HEADER_SOURCE
HEADER_EVENT_ID: Final = contract.HEADER_EVENT_ID
HEADER_RECEIVED_AT: Final = contract.HEADER_RECEIVED_AT
HEADER_ACTION: Final = contract.HEADER_ACTION
HEADER_RELEASE: Final = contract.HEADER_RELEASE

MESSAGES: Final[Mapping[str, MessageContract]] = {
    RAW: MessageContract(payload="CLDRecord", headers=contract.RawRecordHeaders, key=contract.LA_CODE_KEY),
    VALIDATED: MessageContract(payload="RecordValidated", headers=contract.RecordHeaders, key=contract.LA_CODE_KEY),
    PSEUDONYMISED: MessageContract(
        payload="RecordPseudonymised", headers=contract.RecordHeaders, key=contract.LA_CODE_KEY
    ),
    SUBMISSIONS: MessageContract(
        payload="SubmissionEvent", headers=contract.SubmissionHeaders, key=contract.LA_CODE_KEY
    ),
    DEADLETTER: MessageContract(
        payload="DeadLetter",
        headers=contract.DeadLetterHeaders,
        key="The dead-lettered message's key when it is an LA code, else none.",
        key_pattern=None,
    ),
}
"""Each contract topic's message: payload schema, headers and key (the AsyncAPI document is built from it)."""


def prefixed(prefix: str, topic: str) -> str:
    """Topic name with a deployment prefix (tests use per-test prefixes to keep real-broker runs apart)."""
    return f"{prefix}{topic}" if prefix else topic
