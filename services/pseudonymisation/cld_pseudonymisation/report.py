"""The preview report for an information governance (IG) lead, as Markdown. Pure: text in, text out.

It says, field by field, what happens and why (from the policy), then the re-identification risk figures and
warnings. It holds no data values: only field names, counts, shares and the key id.
"""

from __future__ import annotations

from dataclasses import dataclass

from cld_pseudonymisation.policy import Action, FieldPolicy, Method, Policy
from cld_pseudonymisation.pseudonymiser import PSEUDONYM_HEX_CHARS
from cld_pseudonymisation.risk import RiskFigures, qi_label


@dataclass(frozen=True, slots=True)
class ReportContext:
    tenant: str
    purpose: str
    key_id: str
    rows: int
    lookup_used: bool
    lookup_columns: str | None = None


_ACTION_WORDS = {
    Action.KEEP: "kept as sent",
    Action.DROP: "removed",
    Action.PSEUDONYMISE: "replaced by a pseudonym",
    Action.GENERALISE: "generalised",
}


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _what(f: FieldPolicy, ctx: ReportContext) -> str:
    if f.action is Action.GENERALISE and f.method is Method.POSTCODE_GEOGRAPHY and not ctx.lookup_used:
        return "generalised (LSOA and MSOA left blank: no postcode lookup supplied)"
    return _ACTION_WORDS[f.action]


def render_report(policy: Policy, figures: RiskFigures, ctx: ReportContext) -> str:
    lines: list[str] = []
    add = lines.append
    add("# Pseudonymisation preview")
    add("")
    add(
        f"This preview shows what the CLD file would look like after pseudonymisation for the purpose "
        f"**{ctx.purpose}** (tenant **{ctx.tenant}**), and how easily a person could be singled out in it. "
        f"{ctx.rows} rows were read. No value from the file appears in this report."
    )
    add("")
    add(f"- Pseudonymisation key id: `{ctx.key_id}` (identifies the key for rotation; it is not the key).")
    add(
        f"- Pseudonyms: HMAC-SHA256 with the key, {PSEUDONYM_HEX_CHARS} hex characters "
        f"({PSEUDONYM_HEX_CHARS * 4} bits). They differ for every tenant and purpose, so two recipients cannot "
        "link their copies through the pseudonyms, and only the key holder can produce them again."
    )
    if ctx.lookup_used:
        add(f"- LSOA/MSOA derived from the supplied ONS postcode lookup (columns: {ctx.lookup_columns}).")
    else:
        add("- No ONS postcode lookup was supplied, so LSOA and MSOA are blank.")
    add(f"- Policy version {policy.version}.")
    add("")
    add("## Field by field")
    add("")
    add("| Field | What happens | Output column(s) | Why |")
    add("|---|---|---|---|")
    for f in policy.fields:
        outputs = ", ".join(f"`{o}`" for o in f.outputs) or "none"
        add(f"| {_cell(f.header)} | {_what(f, ctx)} | {outputs} | {_cell(f.why)} |")
    add("")
    add("## Re-identification risk")
    add("")
    add(
        "Risk is measured per person (one person may have many rows; each person counts once, with their latest "
        "row), over these quasi-identifiers (values someone could know about a person): "
        + ", ".join(qi_label(q) for q in figures.qi)
        + f". A group is the people sharing the same values; k is a group's size. Threshold: k < "
        f"{figures.k_threshold}."
    )
    add("")
    add("| Figure | Value |")
    add("|---|---|")
    add(f"| People | {figures.people} |")
    add(f"| Rows without a person identifier (not counted) | {figures.rows_without_person} |")
    add(f"| Groups | {figures.classes} |")
    add(f"| Smallest group (minimum k) | {figures.min_k} |")
    add(f"| People unique on these values | {figures.uniques} ({figures.unique_share:.2%}) |")
    add(
        f"| People in groups smaller than {figures.k_threshold} | {figures.people_below_k} "
        f"({figures.share_below_k:.2%}) |"
    )
    add(f"| Average prosecutor risk (mean of 1/k over people) | {figures.average_prosecutor_risk:.4f} |")
    add(f"| Maximum prosecutor risk (1/minimum k) | {figures.max_prosecutor_risk:.4f} |")
    add("")
    add("### Warnings")
    add("")
    if figures.warnings:
        for w in figures.warnings:
            add(f"- {w}")
    else:
        add(f"- None: every person shares their values with at least {figures.k_threshold - 1} others.")
    add("")
    add("### What drives uniqueness")
    add("")
    add("Each line changes one quasi-identifier and leaves the others as they are.")
    add("")
    add(
        f"| Change | Unique people after | Unique people removed | People below k={figures.k_threshold} after "
        "| Smallest group after |"
    )
    add("|---|---|---|---|---|")
    for o in figures.options:
        add(
            f"| {_cell(o.description)} | {o.uniques_after} | {o.uniques_removed} | {o.people_below_k_after} | "
            f"{o.min_k_after} |"
        )
    add("")
    unmeasured = [
        label
        for label, names in (
            ("exact event dates", ("event_start_date", "event_end_date")),
            ("GP practice", ("gp_practice_code",)),
            ("care provider location", ("provider_cqc_location_id",)),
        )
        if not set(names) & set(figures.qi)
    ]
    if unmeasured:
        add(
            f"Not measured: {', '.join(unmeasured)} are kept and can help single people out; add them with "
            "`--qi` to see their effect."
        )
        add("")
    return "\n".join(lines)  # ends with a newline: the last line added is empty
