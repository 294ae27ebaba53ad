"""Synthetic CLD rows for tests, demos and benchmarks (issue 2, item 5). Pure and seeded: no I/O, no clock.

People and their event chains are made up but shaped like an LA's rolling 12-month file: a service user has a
Request, maybe an Assessment (long or short term, sometimes a financial one), maybe Services (some still open,
some ended) and Reviews; carers have their own events with carer fields and Adult 1-3 Linked Person_IDs pointing
at service users earlier in the file; 'Carer known by association' rows carry person and carer details only
(R-SCOPE-10, R-FLD-2). Every clean row is in scope for the reporting period (R-SCOPE-1/2): requests, assessments
and reviews end inside it, services are active at some time in it, no event starts after a Date of Death, and every
event of a person who died has an end date (R-FLD-4).

Code values come from the spec data of the chosen release (``CodePools``):

* the release's own list when it is complete or probable (the validator fails anything else);
* when it is partial or unknown: its known values, then the other release's values whose meaning (key) this
  release's list does not already word differently, then the list's ``unverified_candidates``. These are real
  spec values the validator cannot check, so they pass as *unchecked*;
* only when a field can be Mandatory and nothing at all is known (Method of Assessment): ``PLACEHOLDER_CODE``,
  a string that cannot be mistaken for a real code. Nothing that looks like a real code is ever invented.

Status rules read the meaning (key) of a few coded fields (client type, event type, assessment type, review reason,
service type, delivery mechanism, service component, primary support reason). The generator only relies on a key
when the validator resolves the value to that key; a value it cannot resolve makes the dependent statuses
Undetermined, which never fails, and the generator fills such dependent fields anyway.

Identifiers are synthetic: NHS numbers come only from the never-issued 999 range with valid Modulus 11 check
digits (unique per person up to about 900,000 people, then they repeat); LA person ids are ``SYN`` plus a number;
postcodes have a valid UK shape from a few fixed outward codes and random inward codes; names come from a small
made-up list; GP practices and CQC locations are a handful of fictitious ones.

Injected errors (``error_rate``): each row independently carries at most one error, with the probability given.
Every kind is chosen so that it makes exactly that field fail and no other field of the row (``ErrorKind``). Blanking
or corrupting a status input (e.g. Service Type) can only turn other fields' statuses Undetermined, never Mandatory,
so no extra failure appears; Client Type, Event Type and LA Code are never touched.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from enum import StrEnum
from typing import Final, TypeVar

from cld_schemas.spec import CodeList, Completeness, Release, Spec, SpecField, Validity, load_spec

_T = TypeVar("_T")

Row = dict[str, str | None]
"""A CLD row: every spec field name (LA Code included) to its value, or None when blank."""

PLACEHOLDER_CODE: Final = "UNKNOWN CODE LIST"
"""Written to a mandatory coded field whose code list is not known at all in either release (never a real code)."""

INVALID_CODE_VALUE: Final = "NOT A CLD CODE (synthetic error)"
"""The value an ``invalid_code`` error writes: in no list of any release, whatever the case or spacing."""

DEFAULT_LA_CODE: Final = "318"


class ErrorKind(StrEnum):
    """Kinds of injected error; each fails exactly one field with a known validity and rule."""

    INVALID_CODE = "invalid_code"  # a value in no list, in a field whose list is complete/probable (CLD002)
    RELEASE_1_VALUE = "release_1_value"  # R2 files only: an R1 wording of the same meaning, R2 list complete (CLD003)
    BAD_DATE_FORMAT = "bad_date_format"  # yyyy-mm-dd, d/m/yyyy or a timestamp (CLD010)
    IMPOSSIBLE_DATE = "impossible_date"  # dd/mm/yyyy shape but no such day, e.g. 31/02 (CLD011)
    NHS_CHECK_DIGIT = "nhs_wrong_check_digit"  # 10 digits, wrong Modulus 11 check digit (CLD021)
    NHS_NOT_10_DIGITS = "nhs_not_10_digits"  # 9 or 11 digits, or spaces (CLD020)
    BLANK_MANDATORY = "blank_mandatory"  # a field that is Mandatory on that row left blank (status rule id)
    BAD_POSTCODE = "bad_postcode"  # not a UK postcode shape (CLD030)
    COST_3_DECIMALS = "cost_3_decimals"  # Unit Cost / Planned units per week with 3 decimals (CLD040)
    END_BEFORE_START = "end_before_start"  # Event End Date before Event Start Date (XF001)
    EVENT_FIELD_ON_CKBA = "event_field_on_ckba"  # an event field on a 'Carer known by association' row (XF006)
    CARER_FIELD_ON_SERVICE_USER = "carer_field_on_service_user"  # a carer field on a service user row (XF005)


@dataclass(frozen=True, slots=True)
class InjectedError:
    """One injected error: the validator must report ``expected_validity`` for ``field`` on data row ``row``."""

    row: int
    """1-based data row number (the header is not counted)."""
    field: str
    """Spec header of the field."""
    name: str
    """Spec snake_case name of the field."""
    kind: ErrorKind
    expected_validity: Validity
    rule: str
    """The rule id the validator is expected to cite (CLDnnn / XFnnn, or the status rule id for blanks)."""


# ---------------------------------------------------------------------------------------------------------
# Reporting period
# ---------------------------------------------------------------------------------------------------------


def default_period_end(today: date) -> date:
    """The last quarter end (31 Mar, 30 Jun, 30 Sep, 31 Dec) strictly before ``today``."""
    ends = [date(y, m, d) for y in (today.year - 1, today.year) for m, d in ((3, 31), (6, 30), (9, 30), (12, 31))]
    return max(e for e in ends if e < today)


def period_start_for(period_end: date) -> date:
    """Start of the rolling 12 months ending on ``period_end`` (e.g. 31/03/2026 -> 01/04/2025)."""
    nxt = period_end + timedelta(days=1)
    try:
        return nxt.replace(year=nxt.year - 1)
    except ValueError:  # 29 February
        return date(nxt.year - 1, 3, 1)


# ---------------------------------------------------------------------------------------------------------
# Code value pools per release
# ---------------------------------------------------------------------------------------------------------


def _parse(value: str) -> int:
    """The ordinal of a dd/mm/yyyy date this module wrote."""
    return date(int(value[6:10]), int(value[3:5]), int(value[0:2])).toordinal()


def _fold(value: str) -> str:
    return " ".join(value.casefold().split())


def _slug(value: str) -> str:
    return "_".join("".join(ch if ch.isalnum() else " " for ch in value.lower()).split())


@dataclass(frozen=True, slots=True)
class PoolValue:
    value: str
    key: str | None
    """The meaning the validator resolves this value to, or None (unverified candidates, the placeholder)."""
    tag: str
    """The key, or a slug of the value: what the generator asks for when it wants a value that fits an event."""
    source: str
    """``list`` (this release), ``other_release``, ``unverified`` or ``placeholder``."""


class CodePools:
    """For each coded field, the values the generator may write in one release (see the module docstring)."""

    def __init__(self, spec: Spec, release: Release) -> None:
        self.release = release
        other = Release.R1 if release is Release.R2 else Release.R2
        self.pools: dict[str, tuple[PoolValue, ...]] = {}
        self.enforced: frozenset[str]
        enforced: set[str] = set()
        for f in spec.fields:
            if f.format != "code":
                continue
            mine = f.code_list(release)
            if mine is not None and mine.completeness.enforced:
                enforced.add(f.name)
            self.pools[f.name] = _pool(f, mine=mine, other=f.code_list(other))
        self.enforced = frozenset(enforced)

    def values(self, name: str) -> tuple[PoolValue, ...]:
        return self.pools[name]


def _pool(f: SpecField, *, mine: CodeList | None, other: CodeList | None) -> tuple[PoolValue, ...]:
    mine_cl, other_cl = mine, other
    entries: list[PoolValue] = []
    seen: set[str] = set()

    def add(value: str, key: str | None, source: str) -> None:
        folded = _fold(value)
        if folded in seen:
            return
        seen.add(folded)
        entries.append(PoolValue(value=value, key=key, tag=key or _slug(value), source=source))

    mine_values = mine_cl.values if mine_cl else ()
    for v in mine_values:
        add(v.value, v.key, "list")
    if mine_cl is None or not mine_cl.completeness.enforced:
        mine_keys = {v.key for v in mine_values}
        other_values = other_cl.values if other_cl else ()
        # The other release's wording of a meaning this release words differently is outdated, never used.
        for v in other_values:
            if v.key in mine_keys:
                seen.add(_fold(v.value))
        for v in other_values:
            if v.key not in mine_keys:
                add(v.value, v.key, "other_release")
        for c in mine_cl.unverified_candidates if mine_cl else ():
            add(c, None, "unverified")
    if not entries and any(c.then == "mandatory" for c in f.status):
        entries.append(PoolValue(value=PLACEHOLDER_CODE, key=None, tag="placeholder", source="placeholder"))
    return tuple(entries)


# ---------------------------------------------------------------------------------------------------------
# Fixed synthetic vocabularies
# ---------------------------------------------------------------------------------------------------------

_FIRST_NAMES: Final = (
    "Alvar", "Brisa", "Corin", "Delphy", "Emrik", "Fenna", "Galen", "Hettie", "Ilsa", "Jory",
    "Kesra", "Lorin", "Mabry", "Nell", "Orrin", "Pella", "Quilla", "Rosan", "Sabe", "Tamsin",
    "Ulric", "Veda", "Wynn", "Yara",
)  # fmt: skip
_LAST_NAMES: Final = (
    "Synthfield", "Mockley", "Testbury", "Sampleton", "Fictorr", "Dummerow", "Placewell", "Exemplo",
    "Notreal", "Fabrikson", "Madeupson", "Pseudley", "Demoford", "Trialworth", "Specimen", "Proxley",
)  # fmt: skip
_OUTWARD_CODES: Final = ("LS1", "LS6", "LS11", "M14", "B15", "NE4", "BS5", "S10", "NG7", "CV1", "L8", "SE15")
_DIGITS: Final = "0123456789"
_W_HI: Final = tuple(sum(int(c) * w for c, w in zip(f"{n:03d}", (7, 6, 5), strict=True)) for n in range(1000))
_W_LO: Final = tuple(sum(int(c) * w for c, w in zip(f"{n:03d}", (4, 3, 2), strict=True)) for n in range(1000))
_INWARD_LETTERS: Final = "ABDEFGHJLNPQRSTUWXYZ"  # letters used in real inward codes (no C, I, K, M, O, V)
_GP_PRACTICES: Final = (
    ("Synthetic Health Centre", "Z99901"),
    ("Mockley Lane Surgery", "Z99902"),
    ("Testbury Medical Practice", "Z99903"),
    ("Sampleton Family Doctors", "Z99904"),
    ("Placewell Group Practice", "Z99905"),
)
_DESCRIPTIONS: Final = {
    "request": ("Initial contact", "Three conversations: conversation 1", "Contact from hospital discharge team"),
    "assessment": ("Care Act assessment", "Occupational therapy assessment", "Reassessment"),
    "service": ("Package of care", "Equipment provision", "Placement"),
    "review": ("Annual review", "Six-week review", "Review after hospital stay"),
}

_EVENT_FIELDS: Final = (
    "event_type",
    "event_reference",
    "event_start_date",
    "event_end_date",
    "event_description",
    "event_outcome",
)
_CARER_FIELDS: Final = (
    "total_hrs_caring_per_week",
    "no_of_adults_being_cared_for",
    "adult_1_linked_person_id",
    "adult_2_linked_person_id",
    "adult_3_linked_person_id",
)
_DATE_FIELDS: Final = (
    "reporting_period_start_date",
    "reporting_period_end_date",
    "date_of_birth",
    "date_of_death",
    "event_start_date",
    "event_end_date",
)
# Mandatory on every row whatever the client or event (R-FLD-1); LA Code is left out because it may not be a
# column of the file, so blanking it would not be visible there.
_ALWAYS_MANDATORY: Final = (
    "reporting_period_start_date",
    "reporting_period_end_date",
    "nhs_number",
    "la_person_unique_identifier",
    "gender",
    "ethnicity",
    "date_of_birth",
    "postcode",
    "accommodation_status",
    "has_unpaid_carer",
)
_NEVER_CORRUPTED: Final = frozenset({"client_type", "event_type", "la_code"})
"""Fields whose corruption would change the status of many others: no error kind touches them."""

_IMPOSSIBLE_DAYS: Final = ((30, 2), (31, 2), (31, 4), (31, 6), (31, 9), (31, 11), (0, 5), (12, 13), (32, 1))

_NFA_REQUEST: Final = (
    ("nfa_information_and_advice_or_signposting", 40),
    ("nfa_no_services_offered_for_other_reason", 10),
    ("nfa_support_declined", 10),
    ("nfa_referral_to_nhs_services_or_nhs_funded_social_care", 6),
    ("nfa_referral_to_other_service_within_the_local_authority", 6),
    ("nfa_self_funded_client_or_under_12wk_disregard", 4),
    ("nfa_responsibility_moved_to_another_local_authority", 2),
    ("nfa_other", 4),
)
_NFA_ASSESSMENT: Final = (
    ("nfa_information_and_advice_or_signposting", 20),
    ("nfa_support_declined", 10),
    ("nfa_self_funded_client_or_under_12wk_disregard", 10),
    ("nfa_no_services_offered_for_other_reason", 10),
    ("nfa_other", 3),
)
_SERVICE_ENDED: Final = (
    ("nfa_support_ended_as_planned", 60),
    ("nfa_support_ended_for_other_reason", 20),
    ("admitted_to_hospital", 8),
    ("nfa_self_funded_client_or_under_12wk_disregard", 6),
    ("nfa_responsibility_moved_to_another_local_authority", 3),
)
_REVIEW_OUTCOMES: Final = (
    ("continuation_of_support_or_services", 70),
    ("progress_to_support_planning_or_services", 22),
    ("progress_to_assessment_review_or_reassessment", 8),
)

_ServiceKind = tuple[str, tuple[str, ...], tuple[int, int], str, int]
# Service kinds: (service type key, component tags, unit-cost range in pence, cost frequency tag)
_LT_SERVICES: Final[tuple[_ServiceKind, ...]] = (
    ("long_term_support_community", ("home_support", "home_support_or_domiciliary_care"), (1900, 2900), "hourly", 50),
    ("long_term_support_community", ("direct_payment",), (8000, 60000), "weekly", 14),
    ("long_term_support_community", ("day_support",), (3500, 8500), "per_session", 8),
    ("long_term_support_community", ("community_supported_living", "shared_lives"), (40000, 150000), "weekly", 6),
    ("long_term_support_community", ("extra_care_housing",), (20000, 60000), "weekly", 3),
    ("long_term_support_residential_care", ("long_term_residential_care",), (65000, 140000), "weekly", 12),
    ("long_term_support_nursing_care", ("long_term_nursing_care",), (80000, 160000), "weekly", 6),
    ("long_term_support_prison", ("other_long_term_support",), (2000, 4000), "hourly", 1),
)
_ST_SERVICES: Final[tuple[_ServiceKind, ...]] = (
    ("short_term_support_st_max", ("reablement",), (2500, 3500), "hourly", 0),
    ("short_term_support_other_short_term", ("equipment",), (5000, 90000), "one_off", 4),
    ("short_term_support_other_short_term", ("short_term_residential_care",), (70000, 130000), "weekly", 2),
    ("short_term_support_other_short_term", ("short_term_nursing_care",), (85000, 150000), "weekly", 1),
    ("short_term_support_ongoing_low_level", ("equipment", "transport", "meals"), (500, 3000), "weekly", 2),
)
_DIRECT: Final = "unpaid_carer_support_direct_to_unpaid_carer"
_INVOLVING: Final = "unpaid_carer_support_support_involving_the_person_cared_for"
_RESPITE: Final = ("carer_respite", "unpaid_carer_respite")
_CARER_SERVICES: Final[tuple[_ServiceKind, ...]] = (
    (_DIRECT, ("direct_payment",), (10000, 50000), "one_off", 50),
    (_DIRECT, _RESPITE, (8000, 90000), "weekly", 25),
    (_DIRECT, ("unpaid_carer_sitting_service",), (1500, 2500), "hourly", 10),
    (_INVOLVING, _RESPITE, (60000, 120000), "weekly", 15),
)


# ---------------------------------------------------------------------------------------------------------
# The generator
# ---------------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Event:
    kind: str  # request / assessment / service / review
    start: int  # date ordinal
    end: int | None
    fields: Row


@dataclass(slots=True)
class _RowCtx:
    person: str  # su / carer / ckba
    event: _Event | None
    deceased: bool


class _Choice:
    """Weighted choice of code values by tag, prepared once (fast per-row draws)."""

    __slots__ = ("values",)

    def __init__(self, pool: Sequence[PoolValue], weights: Sequence[tuple[str, int]], rest: int = 0) -> None:
        by_tag: dict[str, list[str]] = {}
        for pv in pool:
            by_tag.setdefault(pv.tag, []).append(pv.value)
        values: list[str] = []
        wanted = {t for t, _ in weights}
        for tag, w in weights:
            for v in by_tag.get(tag, ()):
                values.extend([v] * w)
        if rest:
            for pv in pool:
                if pv.tag not in wanted:
                    values.extend([pv.value] * rest)
        if not values:  # nothing fits: any value of the pool (or none at all)
            values = [pv.value for pv in pool]
        self.values: tuple[str, ...] = tuple(values)

    def pick(self, rng: random.Random) -> str | None:
        values = self.values
        return values[int(rng.random() * len(values))] if values else None


class _Synth:
    def __init__(
        self, *, spec: Spec, release: Release, seed: int, period_end: date, error_rate: float, la_code: str
    ) -> None:
        self.spec = spec
        self.release = release
        self.rng = random.Random(seed)
        self.rand = self.rng.random
        self.error_rate = error_rate
        self.la_code = la_code
        self.names = tuple(f.name for f in sorted(spec.fields, key=lambda f: f.order))
        self.by_name = spec.by_name()
        self.pools = CodePools(spec, release)
        self.rp_end = period_end.toordinal()
        self.rp_start = period_start_for(period_end).toordinal()
        self._dates: dict[int, str] = {}
        self.rp_start_s = self.fmt(self.rp_start)
        self.rp_end_s = self.fmt(self.rp_end)
        self.row_no = 0
        self.event_no = 0
        self.nhs_k = 0
        # A bijection k -> (a*k + b) mod 10**6 over the six free digits of 999xxxxxxC: unique numbers per run.
        self.nhs_a = self.rng.randrange(1, 100_000) * 10 + self.ch((1, 3, 7, 9))
        self.nhs_b = self.rng.randrange(1_000_000)
        self.recent_service_users: deque[str] = deque(maxlen=500)
        self.blank_row: Row = dict.fromkeys(self.names)
        self._prepare_choices()
        self._prepare_errors()

    # ---- helpers (random.Random.randint/choice are several times slower than random() itself) ----
    def ri(self, lo: int, hi: int) -> int:
        """A uniform integer in [lo, hi]."""
        return lo + int(self.rand() * (hi - lo + 1))

    def ch(self, seq: Sequence[_T]) -> _T:
        return seq[int(self.rand() * len(seq))]

    def fmt(self, ordinal: int) -> str:
        s = self._dates.get(ordinal)
        if s is None:
            d = date.fromordinal(ordinal)
            s = f"{d.day:02d}/{d.month:02d}/{d.year:04d}"
            self._dates[ordinal] = s
        return s

    def choice(self, name: str, weights: Sequence[tuple[str, int]], rest: int = 0) -> _Choice:
        return _Choice(self.pools.values(name), weights, rest)

    def value(self, name: str, tag: str) -> str | None:
        """The first value of a field's pool with this tag (None when the release has none)."""
        for pv in self.pools.values(name):
            if pv.tag == tag:
                return pv.value
        return None

    def key_of(self, name: str, value: str | None) -> str | None:
        for pv in self.pools.values(name):
            if pv.value == value:
                return pv.key
        return None

    def _prepare_choices(self) -> None:
        c = self.choice
        self.c_gender = c("gender", (("female", 54), ("male", 44), ("other", 1), ("unknown", 1)))
        self.c_ethnicity = c(
            "ethnicity",
            (
                ("white_english_welsh_scottish_northern_irish_or_british", 150),
                ("no_data_undeclared_or_not_known", 8),
                ("no_data_refused", 2),
            ),
            rest=2,
        )
        self.c_accommodation = c(
            "accommodation_status",
            (
                ("owner_occupier_or_shared_ownership_scheme", 30),
                ("tenant_local_authority_or_other_social_housing_provider", 20),
                ("tenant_private_landlord", 8),
                ("settled_mainstream_housing_with_family_or_friends", 12),
                ("registered_care_home", 10),
                ("registered_nursing_home", 5),
                ("sheltered_housing_extra_care_housing_or_other_sheltered_housing", 6),
                ("supported_accommodation_supported_lodgings_or_supported_group_home", 4),
                ("unknown", 6),
            ),
            rest=1,
        )
        self.c_employment_su = c(
            "employment_status",
            (
                ("not_in_paid_employment_not_actively_seeking_work_or_retired", 60),
                ("unknown", 20),
                ("not_in_paid_employment_seeking_work", 5),
                ("not_in_paid_employment_voluntary_work_only", 4),
                ("paid_less_than_16_hours_a_week", 4),
                ("paid_16_or_more_hours_a_week", 3),
                ("paid_hours_per_week_unknown", 1),
            ),
        )
        self.c_employment_carer = c(
            "employment_status",
            (
                ("paid_16_or_more_hours_a_week", 30),
                ("paid_less_than_16_hours_a_week", 15),
                ("not_in_paid_employment_not_actively_seeking_work_or_retired", 35),
                ("unknown", 20),
            ),
        )
        self.c_has_carer = c("has_unpaid_carer", (("yes", 35), ("no", 45), ("unknown", 20)))
        carer_psr = {pv.tag for pv in self.pools.values("primary_support_reason") if pv.key == "support_to_carer"}
        self.c_psr_su = _Choice(
            [pv for pv in self.pools.values("primary_support_reason") if pv.tag not in carer_psr],
            (
                ("physical_support_personal_care_support", 45),
                ("physical_support_access_and_mobility_only", 10),
                ("support_with_memory_and_cognition", 12),
                ("learning_disability_support", 10),
                ("mental_health_support", 10),
                ("unknown", 4),
            ),
            rest=1,
        )
        self.v_psr_carer = self.value("primary_support_reason", "support_to_carer")
        self.c_funding = c(
            "client_funding_status",
            (
                ("fully_social_care_funded", 40),
                ("joint_client_and_social_care_funded", 40),
                ("18_3_full_cost_client", 5),
                ("fully_client_funded", 5),
                ("unknown_individual_level", 10),
            ),
        )
        self.c_visual = c("visual_impairment", (("no_visual_impairment", 70), ("unknown", 20)), rest=3)
        self.c_hearing = c("hearing_impairment", (("no_hearing_impairment", 70), ("unknown", 20)), rest=3)
        self.c_asd = c("autism_spectrum_disorder_asd", (), rest=1)
        self.c_dementia = c("dementia", (), rest=1)
        self.c_route_su = c(
            "request_route_of_access",
            (
                ("community_other_route", 55),
                ("discharge_from_hospital", 25),
                ("diversion_from_hospital_services", 5),
                ("self_funder", 5),
                ("transfer_from_other_la", 3),
                ("planned_entry_transition", 3),
                ("prison", 1),
                ("discharge_from_reablement", 1),
            ),
        )
        self.c_route_carer = c("request_route_of_access", (("community_other_route", 1),))
        self.c_eligible = c("eligible_needs_identified", (), rest=1)
        self.c_method_assessment = c("method_of_assessment", (), rest=1)
        self.c_method_review_su = c("method_of_review", (("service_user_only", 60), ("service_user_and_carer", 40)))
        self.c_method_review_carer = c("method_of_review", (("carer_only", 1),))
        self.c_review_outcomes = c(
            "review_outcomes_achieved", (("fully_met", 60), ("partially_met", 30), ("not_met", 10)), rest=1
        )
        self.c_review_planned = c("review_reason", (("planned", 1),))
        self.c_review_unplanned = c(
            "review_reason",
            (
                ("unplanned_hospital_planned_and_unplanned_episodes", 40),
                ("unplanned_other_reason", 25),
                ("unplanned_carer_related", 15),
                ("unplanned_safeguarding_concern", 10),
                ("unplanned_provider_failure", 5),
                ("unplanned_change_in_commissioning_arrangements", 5),
                ("review_of_short_term_support", 10),
            ),
        )
        self.c_dm = c(
            "delivery_mechanism",
            (("cassr_commissioned_support", 60), ("cassr_managed_personal_budget", 25), ("direct_payment", 15)),
        )
        self.c_dm_dp = c("delivery_mechanism", (("direct_payment", 1),))
        self.v_dm_commissioned = self.value("delivery_mechanism", "cassr_commissioned_support")
        self.c_outcome_nfa_request = c("event_outcome", _NFA_REQUEST)
        self.c_outcome_nfa_assessment = c("event_outcome", _NFA_ASSESSMENT)
        self.c_outcome_review = c("event_outcome", _REVIEW_OUTCOMES)
        self.c_outcome_service_ended = c("event_outcome", _SERVICE_ENDED)
        self.c_outcome_service_ended_st = c(
            "event_outcome",
            (
                ("nfa_support_ended_as_planned", 50),
                ("progress_to_assessment_review_or_reassessment", 30),
                ("progress_to_support_planning_or_services", 10),
                ("nfa_support_ended_for_other_reason", 10),
            ),
        )
        self.v_outcome = {
            tag: self.value("event_outcome", tag)
            for tag in (
                "progress_to_assessment_review_or_reassessment",
                "progress_to_reablement_st_max",
                "progress_to_support_planning_or_services",
                "continuation_of_support_or_services",
                "nfa_deceased",
            )
        }
        self.v_event_type = {k: self.value("event_type", k) for k in ("request", "assessment", "service", "review")}
        self.v_client_type = {
            k: self.value("client_type", k) for k in ("service_user", "carer", "carer_known_by_association")
        }
        self.v_assessment_type = {k: self.value("assessment_type", k) for k in ("long_term", "short_term", "financial")}
        # Weighted by repetition (the weight is the last item of each kind).
        self.service_choices: dict[str, tuple[_ServiceKind, ...]] = {
            label: tuple(k for k in kinds if self.value("service_type", k[0]) is not None for _ in range(max(k[4], 1)))
            for label, kinds in (("lt", _LT_SERVICES), ("st", _ST_SERVICES), ("carer", _CARER_SERVICES))
        }
        self.c_component: dict[tuple[str, ...], _Choice] = {}
        self.c_cost_freq: dict[str, _Choice] = {}
        for kinds in (_LT_SERVICES, _ST_SERVICES, _CARER_SERVICES):
            for _st, comps, _cost, freq, _w in kinds:
                self.c_component[comps] = c("service_component", tuple((t, 1) for t in comps))
                self.c_cost_freq[freq] = c("cost_frequency_unit_type", ((freq, 1),))

    # ---- identifiers ----
    def nhs_number(self) -> str:
        """The next number of a seeded walk over 999 000 000C..999 999 999C, skipping remainder-10 bodies."""
        while True:
            body = (self.nhs_a * self.nhs_k + self.nhs_b) % 1_000_000
            self.nhs_k += 1
            hi, lo = divmod(body, 1000)
            # Modulus 11 with weights 10..2: '999' weighs 9*(10+9+8) = 243, then the six free digits.
            check = 11 - (243 + _W_HI[hi] + _W_LO[lo]) % 11
            if check == 11:
                check = 0
            if check != 10:
                return f"999{body:06d}{check}"

    def postcode(self) -> str:
        return f"{self.ch(_OUTWARD_CODES)} {self.ch(_DIGITS)}{self.ch(_INWARD_LETTERS)}{self.ch(_INWARD_LETTERS)}"

    def event_ref(self) -> str | None:
        self.event_no += 1
        return f"EV{self.event_no:09d}" if self.rand() < 0.9 else None

    # ---- people ----
    def person(self, index: int) -> list[tuple[Row, list[InjectedError]]]:
        r = self.rng
        u = self.rand()
        if not self.recent_service_users or u < 0.80:
            kind = "su"
        elif u < 0.92:
            kind = "carer"
        else:
            kind = "ckba"
        base = dict(self.blank_row)
        person_id = f"SYN{index + 1:08d}"
        if kind == "su":
            age_lo, age_hi = (65, 104) if self.rand() < 0.62 else (18, 64)
        else:
            age_lo, age_hi = 20, 90
        # Days old at period end: enough days that the person is at least age_lo years old on that date.
        dob = self.rp_end - self.ri(age_lo * 365 + age_lo // 4 + 2, age_hi * 365 + age_hi // 4 + 360)
        gp = self.ch(_GP_PRACTICES) if self.rand() < 0.85 else (None, None)
        base.update(
            la_code=self.la_code,
            reporting_period_start_date=self.rp_start_s,
            reporting_period_end_date=self.rp_end_s,
            nhs_number=self.nhs_number(),
            la_person_unique_identifier=person_id,
            first_name=self.ch(_FIRST_NAMES),
            last_name=self.ch(_LAST_NAMES),
            gp_practice_name=gp[0],
            gp_practice_code=gp[1],
            gender=self.c_gender.pick(r),
            ethnicity=self.c_ethnicity.pick(r),
            date_of_birth=self.fmt(dob),
            client_type=self.v_client_type[
                {"su": "service_user", "carer": "carer", "ckba": "carer_known_by_association"}[kind]
            ],
            postcode=self.postcode(),
            accommodation_status=self.c_accommodation.pick(r),
            has_unpaid_carer=self.c_has_carer.pick(r),
        )
        events: list[_Event]
        deceased = False
        if kind == "su":
            base.update(
                primary_support_reason=self.c_psr_su.pick(r),
                employment_status=self.c_employment_su.pick(r),
                client_funding_status=self.c_funding.pick(r),
                visual_impairment=self.c_visual.pick(r) if self.rand() < 0.7 else None,
                hearing_impairment=self.c_hearing.pick(r) if self.rand() < 0.7 else None,
                autism_spectrum_disorder_asd=self.c_asd.pick(r) if self.rand() < 0.5 else None,
                dementia=self.c_dementia.pick(r) if self.rand() < 0.5 else None,
            )
            events, anchor = self.su_events(dob)
            if self.rand() < 0.04:
                dod = self.ri(anchor, self.rp_end)
                events = self.apply_death(events, dod)
                base["date_of_death"] = self.fmt(dod)
                deceased = True
        else:
            base.update(employment_status=self.c_employment_carer.pick(r) if self.rand() < 0.6 else None)
            self.carer_fields(base)
            events = self.carer_events() if kind == "carer" else []
            if kind == "carer":
                base["primary_support_reason"] = self.v_psr_carer
        out: list[tuple[Row, list[InjectedError]]] = []
        if not events:  # 'Carer known by association': one row, no event fields (R-FLD-2)
            out.append(self.finish_row(base, _RowCtx(kind, None, deceased)))
        else:
            events.sort(key=lambda e: e.start)
            for ev in events:
                row = dict(base)
                row.update(ev.fields)
                row["event_start_date"] = self.fmt(ev.start)
                row["event_end_date"] = None if ev.end is None else self.fmt(ev.end)
                out.append(self.finish_row(row, _RowCtx(kind, ev, deceased)))
        if kind == "su" and any(row["la_person_unique_identifier"] == person_id for row, _ in out):
            self.recent_service_users.append(person_id)
        return out

    def carer_fields(self, base: Row) -> None:
        r = self.rng
        pool = self.recent_service_users
        n = 1 if self.rand() < 0.85 else (2 if self.rand() < 0.8 else 3)
        linked = r.sample(list(pool), min(n, len(pool)))
        base["total_hrs_caring_per_week"] = (
            str(self.ch((5, 10, 15, 20, 35, 50, 70, 100))) if self.rand() < 0.8 else None
        )
        base["no_of_adults_being_cared_for"] = str(len(linked)) if self.rand() < 0.9 else None
        for i, pid in enumerate(linked, start=1):
            base[f"adult_{i}_linked_person_id"] = pid

    # ---- event chains ----
    def request(self, end: int, *, carer: bool, outcome: str | None) -> _Event:
        r = self.rng
        start = end - (0 if self.rand() < 0.6 else self.ri(1, 14))
        return _Event(
            "request",
            start,
            end,
            {
                "event_type": self.v_event_type["request"],
                "event_reference": self.event_ref(),
                "event_description": self.ch(_DESCRIPTIONS["request"]) if self.rand() < 0.2 else None,
                "event_outcome": outcome,
                "request_route_of_access": (self.c_route_carer if carer else self.c_route_su).pick(r),
            },
        )

    def assessment(self, start: int, atype: str, outcome: str | None) -> _Event:
        r = self.rng
        end = start + self.ri(0, 56)
        type_value = self.v_assessment_type[atype]
        financial = self.key_of("assessment_type", type_value) == "financial"
        return _Event(
            "assessment",
            start,
            end,
            {
                "event_type": self.v_event_type["assessment"],
                "event_reference": self.event_ref(),
                "event_description": self.ch(_DESCRIPTIONS["assessment"]) if self.rand() < 0.2 else None,
                # Financial assessments are the only events without an outcome (R-FLD-5); method optional (R-FLD-7)
                "event_outcome": None if financial else outcome,
                "assessment_type": type_value,
                "eligible_needs_identified": self.c_eligible.pick(r) if self.rand() < 0.5 else None,
                "method_of_assessment": None if financial else self.c_method_assessment.pick(r),
            },
        )

    def service(self, start: int, end: int | None, group: str, *, carer: bool) -> _Event:
        r = self.rng
        st_key, comps, (lo, hi), freq, _w = self.ch(self.service_choices[group])
        dm = (self.c_dm_dp if carer and self.rand() < 0.7 else self.c_dm).pick(r) if self.rand() < 0.92 else None
        fields: Row = {
            "event_type": self.v_event_type["service"],
            "event_reference": self.event_ref(),
            "event_description": self.ch(_DESCRIPTIONS["service"]) if self.rand() < 0.2 else None,
            "service_type": self.value("service_type", st_key),
            "service_component": self.c_component[comps].pick(r),
            "delivery_mechanism": dm,
        }
        if not carer and st_key.startswith("long_term") and self.rand() < 0.6:
            n = self.ri(1, 39)
            fields["provider_cqc_location_name"] = f"Synthetic Care Provider {n}"
            fields["provider_cqc_location_id"] = f"1-99900{n:05d}"
        # R-FLD-10: costs are mandatory unless the support is CASSR commissioned; then they are optional.
        if dm is None or dm != self.v_dm_commissioned or self.rand() < 0.5:
            pence = self.ri(lo, hi)
            fields["unit_cost"] = f"{pence // 100}.{pence % 100:02d}"
            fields["cost_frequency_unit_type"] = self.c_cost_freq[freq].pick(r)
            if freq == "hourly":
                q = self.ri(4, 160)  # quarter hours per week
                fields["planned_units_per_week"] = f"{q // 4}.{(q % 4) * 25:02d}"
            elif freq == "per_session":
                fields["planned_units_per_week"] = f"{self.ri(1, 5)}.00"
            else:
                fields["planned_units_per_week"] = "1.00"
        ended = self.c_outcome_service_ended_st if group == "st" else self.c_outcome_service_ended
        fields["event_outcome"] = ended.pick(r)  # replaced by in_scope()/apply_death() when open or ended by death
        return _Event("service", start, end, fields)

    def review(self, start: int, *, planned: bool, carer: bool) -> _Event:
        r = self.rng
        end = start + self.ri(0, 14)
        return _Event(
            "review",
            start,
            end,
            {
                "event_type": self.v_event_type["review"],
                "event_reference": self.event_ref(),
                "event_description": self.ch(_DESCRIPTIONS["review"]) if self.rand() < 0.2 else None,
                "event_outcome": self.c_outcome_review.pick(r),
                "review_reason": (self.c_review_planned if planned or carer else self.c_review_unplanned).pick(r),
                "review_outcomes_achieved": self.c_review_outcomes.pick(r),
                "method_of_review": (self.c_method_review_carer if carer else self.c_method_review_su).pick(r),
            },
        )

    def reviews_of(self, start: int, end: int | None, *, carer: bool, first_after: int = 42) -> list[_Event]:
        """Planned reviews of a long-term service: after about six weeks, then yearly (R-FLD-9)."""
        out = []
        due = start + first_after + self.ri(0, 42)
        last = self.rp_end if end is None else min(end, self.rp_end)
        while due <= last:
            if due + 14 >= self.rp_start:
                out.append(self.review(due, planned=True, carer=carer))
            due += 365 + self.ri(-30, 30)
        if not carer and out and self.rand() < 0.15:
            out.append(self.review(self.ri(max(start, self.rp_start - 14), last), planned=False, carer=False))
        return out

    def su_events(self, dob: int) -> tuple[list[_Event], int]:
        """A service user's events, and the earliest date a death may fall on without emptying the chain."""
        r = self.rng
        adult = dob + 18 * 365 + 5
        if self.rand() < 0.45 and adult < self.rp_start - 60:
            # An existing client: a long-term service from before the period, reviews in it (R-SCOPE-1, -5).
            start = self.ri(max(adult, self.rp_start - 6 * 365), self.rp_start - 1)
            end = self.ri(self.rp_start, self.rp_end) if self.rand() < 0.2 else None
            svc = self.service(start, end, "lt", carer=False)
            events = [svc, *self.reviews_of(start, end, carer=False)]
            if self.rand() < 0.2:  # a second line of the same package
                events.append(
                    self.service(self.ri(start, self.rp_end), None, "st" if self.rand() < 0.5 else "lt", carer=False)
                )
            return self.in_scope(events), self.rp_start
        req_end = self.ri(self.rp_start, self.rp_end)
        u = self.rand()
        if u < 0.45:
            events = [
                self.request(
                    req_end, carer=False, outcome=self.v_outcome["progress_to_assessment_review_or_reassessment"]
                )
            ]
            a_start = req_end + self.ri(0, 21)
            long_term = self.rand() < 0.75
            to_services = self.rand() < (0.65 if long_term else 0.6)
            outcome = (
                self.v_outcome["progress_to_support_planning_or_services"]
                if to_services
                else self.c_outcome_nfa_assessment.pick(r)
            )
            a = self.assessment(a_start, "long_term" if long_term else "short_term", outcome)
            events.append(a)
            assert a.end is not None
            if to_services:
                if long_term and self.rand() < 0.5 and self.v_assessment_type["financial"] is not None:
                    events.append(self.assessment(a.end + self.ri(0, 14), "financial", None))
                s_start = a.end + self.ri(0, 28)
                if long_term:
                    s_end = s_start + self.ri(30, 700) if self.rand() < 0.3 else None
                    events.append(self.service(s_start, s_end, "lt", carer=False))
                    events.extend(self.reviews_of(s_start, s_end, carer=False))
                else:
                    events.append(self.service(s_start, s_start + self.ri(0, 90), "st", carer=False))
        elif u < 0.60:
            events = [self.request(req_end, carer=False, outcome=self.v_outcome["progress_to_reablement_st_max"])]
            s_start = req_end + self.ri(0, 7)
            svc = self.service(s_start, s_start + self.ri(14, 42), "st", carer=False)
            svc.fields["service_type"] = self.value("service_type", "short_term_support_st_max")
            events.append(svc)
        else:
            events = [self.request(req_end, carer=False, outcome=self.c_outcome_nfa_request.pick(r))]
        return self.in_scope(events), req_end

    def carer_events(self) -> list[_Event]:
        r = self.rng
        if self.rand() < 0.35:
            start = self.ri(self.rp_start - 4 * 365, self.rp_start - 1)
            svc = self.service(start, None, "carer", carer=True)
            return self.in_scope([svc, *self.reviews_of(start, None, carer=True, first_after=300)])
        req_end = self.ri(self.rp_start, self.rp_end)
        to_assessment = self.rand() < 0.7
        events = [
            self.request(
                req_end,
                carer=True,
                outcome=self.v_outcome["progress_to_assessment_review_or_reassessment"]
                if to_assessment
                else self.c_outcome_nfa_request.pick(r),
            )
        ]
        if to_assessment:
            to_service = self.rand() < 0.6
            outcome = (
                self.v_outcome["progress_to_support_planning_or_services"]
                if to_service
                else self.c_outcome_nfa_assessment.pick(r)
            )
            a = self.assessment(req_end + self.ri(0, 28), "long_term", outcome)
            events.append(a)
            assert a.end is not None
            if to_service:
                s_start = a.end + self.ri(0, 28)
                one_off = self.rand() < 0.5
                events.append(self.service(s_start, s_start if one_off else None, "carer", carer=True))
                if not one_off:
                    events.extend(self.reviews_of(s_start, None, carer=True, first_after=300))
        return self.in_scope(events)

    def in_scope(self, events: list[_Event], horizon: int | None = None) -> list[_Event]:
        """Keep what an LA would submit for the period (R-SCOPE-1/2); services not ended by then are open."""
        last = self.rp_end if horizon is None else horizon
        kept = []
        for ev in events:
            if ev.kind == "service":
                if ev.start > last:
                    continue
                if ev.end is not None and ev.end > last:
                    ev.end = None
                if ev.end is not None and ev.end < self.rp_start:
                    continue
                if ev.end is None:
                    ev.fields["event_outcome"] = self.v_outcome["continuation_of_support_or_services"]
                kept.append(ev)
            elif ev.end is not None and self.rp_start <= ev.end <= last:
                kept.append(ev)
        return kept

    def apply_death(self, events: list[_Event], dod: int) -> list[_Event]:
        """Nothing after the Date of Death; every event then has an end date (R-FLD-4); open services end on it."""
        kept = self.in_scope(events, horizon=dod)
        for ev in kept:
            if ev.kind == "service" and ev.end is None:
                ev.end = dod
                ev.fields["event_outcome"] = self.v_outcome["nfa_deceased"]
        return kept

    # ---- rows and errors ----
    def finish_row(self, row: Row, ctx: _RowCtx) -> tuple[Row, list[InjectedError]]:
        self.row_no += 1
        if self.error_rate and self.rand() < self.error_rate:
            err = self.inject(row, ctx)
            if err is not None:
                return row, [err]
        return row, []

    def _prepare_errors(self) -> None:
        pools = self.pools
        self.invalid_code_fields = tuple(n for n in self.names if n in pools.enforced and n not in _NEVER_CORRUPTED)
        # R2 only: for each R2 value of a complete list, R1 wordings of the same meaning that R2 does not also use.
        self.r1_twins: dict[str, dict[str, tuple[str, ...]]] = {}
        if self.release is Release.R2:
            for f in self.spec.fields:
                r2 = f.code_list(Release.R2)
                r1 = f.code_list(Release.R1)
                if (
                    f.name in _NEVER_CORRUPTED
                    or r2 is None
                    or r1 is None
                    or r2.completeness is not Completeness.COMPLETE
                ):
                    continue
                r2_values = {v.value for v in r2.values}
                twins: dict[str, tuple[str, ...]] = {}
                for v in r2.values:
                    olds = tuple(o.value for o in r1.values if o.key == v.key and o.value not in r2_values)
                    if olds:
                        twins[v.value] = olds
                if twins:
                    self.r1_twins[f.name] = twins

    def _mandatory_fields(self, row: Row, ctx: _RowCtx) -> list[str]:
        """Fields Mandatory on this row whatever unresolved values elsewhere (R-FLD-1, -3..-11, -14)."""
        out = [n for n in _ALWAYS_MANDATORY if row[n]]
        ev = ctx.event
        if ev is None:
            return out
        out.append("event_start_date")
        if ev.kind != "service" or ctx.deceased:
            out.append("event_end_date")
        financial = ev.kind == "assessment" and self.key_of("assessment_type", row["assessment_type"]) == "financial"
        # Event Outcome is Mandatory except on financial assessments (R-FLD-5). Conservative on purpose: only
        # blanked where Assessment Type is present and not financial, because spec data whose financial case does
        # not also test Event Type makes the validator read a blank Assessment Type as unknown (Undetermined).
        if ev.kind == "assessment" and not financial:
            out.append("event_outcome")
        if ev.kind != "request" and ctx.person != "ckba":
            out.append("primary_support_reason")
        if ctx.person == "su" and (ev.kind in ("service", "review") or financial):
            out.append("client_funding_status")
        if ev.kind == "request":
            out.append("request_route_of_access")
        elif ev.kind == "assessment":
            out.append("assessment_type")
            if not financial:
                out.append("method_of_assessment")
        elif ev.kind == "service":
            out.extend(("service_type", "service_component"))
        else:
            out.extend(("review_reason", "method_of_review"))
        return [n for n in out if row.get(n)]

    def inject(self, row: Row, ctx: _RowCtx) -> InjectedError | None:
        ev = ctx.event
        options: dict[ErrorKind, list[str]] = {
            ErrorKind.INVALID_CODE: [n for n in self.invalid_code_fields if row[n]],
            ErrorKind.RELEASE_1_VALUE: [n for n, tw in self.r1_twins.items() if row[n] in tw],
            ErrorKind.BAD_DATE_FORMAT: [n for n in _DATE_FIELDS if row[n]],
            ErrorKind.IMPOSSIBLE_DATE: [n for n in _DATE_FIELDS if row[n]],
            ErrorKind.NHS_CHECK_DIGIT: ["nhs_number"],
            ErrorKind.NHS_NOT_10_DIGITS: ["nhs_number"],
            ErrorKind.BLANK_MANDATORY: self._mandatory_fields(row, ctx),
            ErrorKind.BAD_POSTCODE: ["postcode"],
            ErrorKind.COST_3_DECIMALS: [n for n in ("unit_cost", "planned_units_per_week") if row[n]],
            ErrorKind.END_BEFORE_START: ["event_end_date"]
            if ev is not None and row["event_start_date"] and row["event_end_date"]
            else [],
            ErrorKind.EVENT_FIELD_ON_CKBA: list(_EVENT_FIELDS) if ctx.person == "ckba" else [],
            ErrorKind.CARER_FIELD_ON_SERVICE_USER: list(_CARER_FIELDS) if ctx.person == "su" else [],
        }
        kinds = [k for k, names in options.items() if names]
        if not kinds:
            return None
        kind = self.ch(kinds)
        name = self.ch(options[kind])
        value = row[name]
        invalid = Validity.INVALID
        validity, rule = invalid, ""
        if kind is ErrorKind.INVALID_CODE:
            row[name], rule = INVALID_CODE_VALUE, "CLD002"
        elif kind is ErrorKind.RELEASE_1_VALUE:
            assert value is not None
            row[name], validity, rule = self.ch(self.r1_twins[name][value]), Validity.RELEASE_1, "CLD003"
        elif kind is ErrorKind.BAD_DATE_FORMAT:
            assert value is not None
            dd, mm, yyyy = value.split("/")
            row[name] = self.ch((f"{yyyy}-{mm}-{dd}", f"{int(dd)}/{int(mm)}/{yyyy}", f"{value} 00:00:00"))
            if row[name] == value:  # 1-digit day and month never equal the 2-digit form, but be sure
                row[name] = f"{yyyy}-{mm}-{dd}"
            rule = "CLD010"
        elif kind is ErrorKind.IMPOSSIBLE_DATE:
            assert value is not None
            day, month = self.ch(_IMPOSSIBLE_DAYS)
            row[name], rule = f"{day:02d}/{month:02d}/{value[6:10]}", "CLD011"
        elif kind is ErrorKind.NHS_CHECK_DIGIT:
            assert value is not None
            wrong = self.ch([d for d in "0123456789" if d != value[9]])
            row[name], rule = value[:9] + wrong, "CLD021"
        elif kind is ErrorKind.NHS_NOT_10_DIGITS:
            assert value is not None
            row[name] = self.ch((value[:9], value + self.ch(_DIGITS), f"{value[:3]} {value[3:6]} {value[6:]}"))
            rule = "CLD020"
        elif kind is ErrorKind.BLANK_MANDATORY:
            row[name], validity, rule = None, Validity.BLANK_MANDATORY, self._status_rule_id(name, ctx)
        elif kind is ErrorKind.BAD_POSTCODE:
            assert value is not None
            outward = value.split(" ")[0]
            row[name] = self.ch((outward, value.replace(" ", "-"), value.replace(" ", "  "), "12345", value + "X"))
            rule = "CLD030"
        elif kind is ErrorKind.COST_3_DECIMALS:
            assert value is not None
            row[name], rule = f"{value}{self.ri(1, 9)}", "CLD040"
        elif kind is ErrorKind.END_BEFORE_START:
            start = _parse(row["event_start_date"] or "")
            row[name], rule = self.fmt(start - self.ri(1, 30)), "XF001"
        elif kind is ErrorKind.EVENT_FIELD_ON_CKBA:
            row[name], rule = self._event_value(name), "XF006"
        else:  # CARER_FIELD_ON_SERVICE_USER
            row[name], rule = self._carer_value(name, row), "XF005"
        return InjectedError(
            row=self.row_no,
            field=self.by_name[name].header,
            name=name,
            kind=kind,
            expected_validity=validity,
            rule=rule,
        )

    def _status_rule_id(self, name: str, ctx: _RowCtx) -> str:
        """The id of the status case that makes ``name`` Mandatory here (the rule the validator cites)."""
        if name == "event_end_date":
            return "S-EVENT-END-DECEASED" if ctx.deceased else "S-EVENT-END-NOT-SERVICE"
        cases = [c.id for c in self.by_name[name].status if c.then == "mandatory"]
        return cases[0]

    def _event_value(self, name: str) -> str:
        if name == "event_type":
            return self.v_event_type["request"] or PLACEHOLDER_CODE
        if name in ("event_start_date", "event_end_date"):
            return self.fmt(self.ri(self.rp_start, self.rp_end))
        if name == "event_outcome":
            return self.v_outcome["continuation_of_support_or_services"] or PLACEHOLDER_CODE
        if name == "event_reference":
            return f"EV{self.ri(0, 10**9 - 1):09d}"
        return _DESCRIPTIONS["request"][0]

    def _carer_value(self, name: str, row: Row) -> str:
        if name == "total_hrs_caring_per_week":
            return "35"
        if name == "no_of_adults_being_cared_for":
            return "1"
        others = [p for p in self.recent_service_users if p != row["la_person_unique_identifier"]]
        return self.ch(others) if others else "SYN00000000"


def generate_people(
    *,
    people: int,
    seed: int,
    period_end: date,
    release: Release = Release.R2,
    error_rate: float = 0.0,
    la_code: str = DEFAULT_LA_CODE,
    spec: Spec | None = None,
) -> Iterator[list[tuple[Row, list[InjectedError]]]]:
    """For each of ``people`` synthetic people, their rows (at least one each) with the errors injected in them.

    Every row holds every spec field by snake_case name, LA Code included (``la_code``), so ``validate_record``
    can judge it as is; a file writer leaves the LA Code column out unless asked (its presence is unknown).
    ``period_end`` is the last day of the rolling 12-month reporting period (``default_period_end(today)``).

    Rows are numbered across people (``InjectedError.row``) in the order they are yielded. Memory does not grow
    with ``people``: only a few hundred recent service-user ids are kept (the carers' Linked Person_IDs).
    """
    if people < 0:
        raise ValueError("people must be 0 or more")
    if not 0.0 <= error_rate <= 1.0:
        raise ValueError("error_rate must be between 0 and 1")
    if not (len(la_code) == 3 and la_code.isdigit()):
        raise ValueError("la_code must be 3 digits")
    synth = _Synth(
        spec=spec or load_spec(),
        release=release,
        seed=seed,
        period_end=period_end,
        error_rate=error_rate,
        la_code=la_code,
    )
    for i in range(people):
        yield synth.person(i)


def generate_rows(
    *,
    people: int,
    seed: int,
    period_end: date,
    release: Release = Release.R2,
    error_rate: float = 0.0,
    la_code: str = DEFAULT_LA_CODE,
    spec: Spec | None = None,
) -> Iterator[tuple[Row, list[InjectedError]]]:
    """Every row of a synthetic file with the errors injected in it (see ``generate_people``)."""
    for rows in generate_people(
        people=people,
        seed=seed,
        period_end=period_end,
        release=release,
        error_rate=error_rate,
        la_code=la_code,
        spec=spec,
    ):
        yield from rows
