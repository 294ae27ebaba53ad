"""Transparency material: the section an LA puts in its privacy notice about its CLD return to NHS England.

Issue 6 section 3; NHS England's IG guidance for LAs (nhs-context.md): LAs must tell people what is shared,
for what purposes, and what their rights are. Everything is generated from data, so it cannot drift from what
the software sends: the data items from the spec data (every field, by its header, grouped), the purposes,
legal basis and onward use from the sharing policy, and the LA's name from the tenants registry.

The text is built once as plain-text blocks (:class:`Notice`), then rendered to Markdown or HTML; each renderer
escapes every piece of text itself, so an LA name or policy text can never inject markup. The HTML is a
self-contained fragment (or, with ``standalone``, a whole page) with no scripts, styles or external assets.
It makes no claim it cannot source: it names NHS England's pages rather than inventing addresses.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from typing import Literal

from cld_governance.loaders import default_policy
from cld_governance.sharing import NHS_ENGLAND, Form, Recipient, SharingPolicy
from cld_schemas.spec import Spec, SpecField, load_spec

Format = Literal["md", "html"]

# Spec field groups (spec data ``group``) -> plain-English headings, in reading order. A group not listed here
# still appears, under "Other items", so every field the spec names is always listed.
_GROUPS: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("About you", ("person",), "Who you are and your circumstances."),
    (
        "Your contacts with us (events)",
        ("event", "request", "assessment", "review"),
        "Each request for support, assessment and review, with its dates and outcome.",
    ),
    ("Services you receive", ("service",), "The care and support services arranged for you, and who provides them."),
    ("Costs", ("cost",), "What the services cost and how much of them is planned each week."),
    (
        "Carers",
        ("carer",),
        "If you are an unpaid carer: how much care you give and the adults you care for (where we know them).",
    ),
    ("About the return itself", ("header",), "Which council sent the information and the period it covers."),
)
_OTHER = ("Other items", "Other items the specification names.")


@dataclass(frozen=True, slots=True)
class Bullets:
    items: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Paragraph:
    text: str


@dataclass(frozen=True, slots=True)
class Section:
    heading: str
    blocks: tuple[Paragraph | Bullets | Section, ...]


@dataclass(frozen=True, slots=True)
class Notice:
    """Plain text only; renderers escape."""

    title: str
    la_code: str
    la_name: str
    sections: tuple[Section, ...]
    footer: str
    field_headers: tuple[str, ...] = field(default=())


def _field_item(f: SpecField) -> str:
    return f"{f.header} (this identifies you)" if f.pii else f.header


def _data_items(spec: Spec) -> tuple[Section, ...]:
    sections: list[Section] = []
    placed: set[str] = set()
    for heading, groups, blurb in _GROUPS:
        fields = [f for f in spec.fields if f.group in groups]
        placed.update(f.name for f in fields)
        if fields:
            sections.append(Section(heading, (Paragraph(blurb), Bullets(tuple(_field_item(f) for f in fields)))))
    rest = [f for f in spec.fields if f.name not in placed]
    if rest:
        sections.append(Section(_OTHER[0], (Paragraph(_OTHER[1]), Bullets(tuple(_field_item(f) for f in rest)))))
    return tuple(sections)


def _other_recipient(r: Recipient) -> Section:
    assert r.legal_basis is not None  # recipients_for() returns only recipients with a basis
    blocks: list[Paragraph | Bullets | Section] = [Paragraph(f"Legal basis: {r.legal_basis.summary}")]
    if r.legal_basis.instruments:
        blocks.append(Bullets(r.legal_basis.instruments))
    if r.purposes:
        blocks.append(Paragraph("Purposes:"))
        blocks.append(Bullets(r.purposes))
    form = (
        "pseudonymised (details that identify you directly are removed or replaced)"
        if r.form is Form.PSEUDONYMISED
        else "identifiable"
    )
    blocks.append(Paragraph(f"Form: {form}."))
    if r.opt_outs_apply:
        blocks.append(
            Paragraph(
                "Your right to object and the national data opt-out apply to this sharing: if you have objected "
                "to us, or registered a national data opt-out, your information is left out."
            )
        )
    if r.retention:
        blocks.append(Paragraph(r.retention))
    return Section(r.name, tuple(blocks))


def build_notice(
    *,
    la_code: str,
    la_name: str | None = None,
    spec: Spec | None = None,
    policy: SharingPolicy | None = None,
) -> Notice:
    """The transparency section for one LA, as plain-text blocks."""
    spec = spec or load_spec()
    policy = policy or default_policy()
    nhse = policy.nhs_england
    basis = nhse.legal_basis
    assert basis is not None  # the policy validator requires NHS England's basis
    name = la_name or f"Local authority {la_code}"
    we = name

    intro = Section(
        "What this is",
        (
            Paragraph(
                f"{we} must send NHS England information about the adult social care and support it provides or "
                "arranges: each request for support, assessment, service and review, and information about unpaid "
                "carers. This is called the Adult Social Care Client Level Data (CLD) collection. We send it every "
                "quarter, and each time it covers the previous 12 months."
            ),
            Paragraph(
                "It includes information that care providers we contract with give us about the care they provide "
                "on our behalf."
            ),
        ),
    )
    what = Section(
        "What information we send to NHS England",
        (
            Paragraph(
                "We send the following items, as set out in NHS England's specification for this collection. "
                "Not every item applies to everyone: for example, cost items apply only to services."
            ),
            *_data_items(spec),
        ),
    )
    why = Section(
        "Why NHS England collects it",
        (Bullets(nhse.purposes),) if nhse.purposes else (Paragraph("See NHS England's pages for this collection."),),
    )
    legal = Section("Our legal basis", (Paragraph(basis.summary), Bullets(basis.instruments)))
    opt_out = Section(
        "Your right to object and the national data opt-out do not apply to this sharing",
        (
            Paragraph(
                "Because the law requires us to send this information to NHS England, neither your right to object "
                "under the UK GDPR nor the national data opt-out applies to it. If you have registered a national "
                "data opt-out, or objected to us, your information is still sent to NHS England for this collection."
            ),
            Paragraph(
                "Your choices still apply to other uses of your information where the law gives you that choice, "
                "including any other sharing described in this notice."
            ),
        ),
    )
    onward_blocks: list[Paragraph | Bullets | Section] = [
        Paragraph(
            "NHS England pseudonymises the data before it shares it with any other organisation: others receive it "
            "only in a form that does not name you."
        )
    ]
    if nhse.onward:
        onward_blocks.append(Paragraph(nhse.onward))
    onward = Section("What NHS England does with it", tuple(onward_blocks))
    keep = Section(
        "How long it is kept and where",
        (Paragraph(nhse.retention or "As set out in NHS England's transparency information for this collection."),),
    )
    sections = [intro, what, why, legal, opt_out, onward, keep]

    others = [r for r in policy.recipients_for(la_code) if r.id != NHS_ENGLAND]
    if others:
        sections.append(
            Section(
                "Other organisations we share this information with",
                (
                    Paragraph(
                        "We share information from this collection with the organisations below only where a legal "
                        "basis is in place, as described for each."
                    ),
                    *(_other_recipient(r) for r in others),
                ),
            )
        )

    sections.append(
        Section(
            "Your other rights",
            (
                Bullets(
                    (
                        "Access: you can ask us for a copy of the information we hold about you, including what we "
                        "send in this collection.",
                        "Rectification: if something we hold is wrong, ask us to correct it. Each quarterly return "
                        "replaces the one before, so our next return to NHS England carries the correction.",
                        "Complaint: you can complain to the Information Commissioner's Office (ICO), the UK's "
                        "independent regulator for data protection, if you are unhappy with how your information "
                        "is handled. We would welcome the chance to put things right first.",
                    )
                ),
                Paragraph(f"To use these rights, contact {we}'s data protection officer."),
            ),
        )
    )
    more = [
        nhse.more_information
        or "See NHS England's Adult Social Care Client Level Data pages, and its transparency information for this "
        "collection.",
        f"See {we}'s privacy notice for everything else we do with your information.",
    ]
    sections.append(Section("Find out more", (Bullets(tuple(more)),)))

    return Notice(
        title=f"{name}: sharing adult social care information with NHS England",
        la_code=la_code,
        la_name=name,
        sections=tuple(sections),
        footer=(
            f"Generated from the CLD specification data ({spec.data_version}) and this deployment's sharing policy. "
            "Review it with your data protection officer before publishing."
        ),
        field_headers=tuple(f.header for f in spec.fields),
    )


# --------------------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------------------

_MD_SPECIAL = re.compile(r"([\\`*\[\]<>#|])")


def _md(text: str) -> str:
    """Escape Markdown syntax characters (underscores inside words are literal in CommonMark: kept readable)."""
    return _MD_SPECIAL.sub(r"\\\1", " ".join(text.split()))


def render_markdown(notice: Notice) -> str:
    out: list[str] = [f"## {_md(notice.title)}", ""]

    def emit(section: Section, level: int) -> None:
        out.extend([f"{'#' * level} {_md(section.heading)}", ""])
        for block in section.blocks:
            if isinstance(block, Paragraph):
                out.extend([_md(block.text), ""])
            elif isinstance(block, Bullets):
                out.extend(f"- {_md(item)}" for item in block.items)
                out.append("")
            else:
                emit(block, min(level + 1, 6))

    for s in notice.sections:
        emit(s, 3)
    out.extend([f"_{_md(notice.footer)}_", ""])
    return "\n".join(out)


def _h(text: str) -> str:
    return html.escape(text, quote=True)


def render_html(notice: Notice, *, standalone: bool = False) -> str:
    """An HTML fragment (``<section>``), or a whole page with ``standalone``. Every text is escaped."""
    out: list[str] = [f'<section class="cld-transparency" lang="en" data-la-code="{_h(notice.la_code)}">']
    out.append(f"<h2>{_h(notice.title)}</h2>")

    def emit(section: Section, level: int) -> None:
        out.append(f"<h{level}>{_h(section.heading)}</h{level}>")
        for block in section.blocks:
            if isinstance(block, Paragraph):
                out.append(f"<p>{_h(block.text)}</p>")
            elif isinstance(block, Bullets):
                out.append("<ul>")
                out.extend(f"<li>{_h(item)}</li>" for item in block.items)
                out.append("</ul>")
            else:
                emit(block, min(level + 1, 6))

    for s in notice.sections:
        emit(s, 3)
    out.append(f"<p><small>{_h(notice.footer)}</small></p>")
    out.append("</section>")
    body = "\n".join(out) + "\n"
    if not standalone:
        return body
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{_h(notice.title)}</title>\n</head>\n<body>\n{body}</body>\n</html>\n"
    )


def render(notice: Notice, fmt: Format, *, standalone: bool = False) -> str:
    return render_html(notice, standalone=standalone) if fmt == "html" else render_markdown(notice)
