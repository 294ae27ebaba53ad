"""cld_pseudonymisation: the pseudonymisation policy, keyed pseudonyms, generalisation and re-identification risk.

Pure domain code (no Kafka, HTTP or environment access); see docs/pseudonymisation.md for the API.
"""

from cld_pseudonymisation.generalise import LookupFileError, PostcodeLookup
from cld_pseudonymisation.keys import ENV_VAR, MIN_KEY_BYTES, PseudonymKey, PseudonymKeyError
from cld_pseudonymisation.policy import Action, FieldPolicy, Method, Namespace, Policy, PolicyError, load_policy
from cld_pseudonymisation.pseudonymiser import (
    Pseudonymiser,
    PseudonymiserError,
    person_key,
    qi_getter,
    qi_tuple,
    row_order,
)
from cld_pseudonymisation.report import ReportContext, render_report
from cld_pseudonymisation.risk import (
    DEFAULT_K_THRESHOLD,
    DEFAULT_QI,
    RiskAccumulator,
    RiskFigures,
    RiskOption,
    RiskSummary,
    measure_risk,
)

__all__ = [
    "DEFAULT_K_THRESHOLD",
    "DEFAULT_QI",
    "ENV_VAR",
    "MIN_KEY_BYTES",
    "Action",
    "FieldPolicy",
    "LookupFileError",
    "Method",
    "Namespace",
    "Policy",
    "PolicyError",
    "PostcodeLookup",
    "PseudonymKey",
    "PseudonymKeyError",
    "Pseudonymiser",
    "PseudonymiserError",
    "ReportContext",
    "RiskAccumulator",
    "RiskFigures",
    "RiskOption",
    "RiskSummary",
    "load_policy",
    "measure_risk",
    "person_key",
    "qi_getter",
    "qi_tuple",
    "render_report",
    "row_order",
]
