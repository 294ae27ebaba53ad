"""The DQ report as one self-contained HTML page: inline CSS, inline SVG charts drawn here, no script, no URL.

Charts: failures by field, the validity mix per field, failures over event start months. Then the findings
table (Row as Excel shows it, Event Reference, Field, Status, Validity, Rule, Message, Fix) and the profile per
field and event type. Every text from the LA's file is HTML-escaped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from typing import Any, Final

from cld_schemas.dqreport import (
    ALL_EVENTS,
    DATASET_CHECK_COLUMNS,
    FINDING_COLUMNS,
    NO_START_MONTH,
    PID,
    WARNING_COLUMNS,
    LocatedFinding,
    dataset_check_rows,
    warning_rows,
)
from cld_schemas.spec import FieldStatus, Validity

MAX_FINDINGS_ON_PAGE: Final = 5000
"""More findings than this are counted on the page and listed in full in the workbook / JSON report."""

VALIDITY_COLOURS: Final[dict[str, str]] = {
    Validity.VALID.value: "#2e7d32",
    Validity.BLANK_NOT_MANDATORY.value: "#b0bec5",
    Validity.BLANK_MANDATORY.value: "#ef6c00",
    Validity.INVALID.value: "#c62828",
    Validity.RELEASE_1.value: "#6a1b9a",
}
_BAR: Final = "#1565c0"
_CSS: Final = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Arial,sans-serif;margin:0;color:#1b1b1b;background:#fafafa}
header{background:#005eb8;color:#fff;padding:16px 28px}
header h1{margin:0;font-size:1.5rem}
header p{margin:4px 0 0}
main{max-width:1280px;margin:0 auto;padding:12px 28px 40px}
section{background:#fff;border:1px solid #dde1e6;border-radius:6px;padding:12px 18px;margin:16px 0}
h2{font-size:1.15rem;margin:4px 0 10px}
.tiles{display:flex;flex-wrap:wrap;gap:12px}
.tile{flex:1 1 160px;background:#fff;border:1px solid #dde1e6;border-radius:6px;padding:10px 14px}
.tile b{display:block;font-size:1.6rem}
.bad b{color:#c62828}.good b{color:#2e7d32}
table{border-collapse:collapse;width:100%;font-size:.86rem}
th,td{border-bottom:1px solid #e5e8eb;padding:4px 6px;text-align:left;vertical-align:top}
th{background:#e8f0fb;position:sticky;top:0}
td.n{text-align:right;font-variant-numeric:tabular-nums}
.legend span{display:inline-block;margin-right:14px;font-size:.85rem}
.legend i{display:inline-block;width:12px;height:12px;margin-right:4px;vertical-align:-1px}
.note{color:#555;font-size:.85rem}
.scroll{max-height:640px;overflow:auto}
svg text{font-family:inherit}
"""


def render_html(
    report: Mapping[str, Any],
    findings: Sequence[LocatedFinding],
    *,
    source_name: str,
    release: str,
    total_findings: int | None = None,
    dataset_checks: Sequence[Mapping[str, Any]] | None = None,
    title: str = "CLD data quality report",
    extra_sections: Sequence[tuple[str, str, str]] = (),
    unavailable: Mapping[str, str] | None = None,
) -> bytes:
    """The page for one validated file (or one submission). ``findings``: at most MAX_FINDINGS_ON_PAGE of them
    are listed. ``extra_sections``: (title, id, HTML body built with ``table``) after the summary tiles;
    ``unavailable``: section id -> a note shown instead of that section's content (what the caller does not
    have, e.g. the per-field profile of a submission)."""
    total = report.get("failures", len(findings)) if total_findings is None else total_findings
    profile = report.get("profile") or {}
    missing = dict(unavailable or {})

    def body(ident: str, content: str) -> str:
        return f'<p class="note">{escape(missing[ident])}</p>' if ident in missing else content

    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}: {escape(source_name)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<header><h1>{escape(title)}</h1><p>{escape(source_name)} &middot; checked against "
        f"{escape(release)}</p></header><main>",
        _tiles(report),
        *(_section(t, ident, content) for t, ident, content in extra_sections),
        _section(
            "Failures by field", "chart-failures-by-field", body("chart-failures-by-field", _failures_by_field(report))
        ),
        _section(
            "Validity mix per field",
            "chart-validity-mix",
            body("chart-validity-mix", _legend() + _validity_mix(profile)),
        ),
        _section(
            "Failures by event start month",
            "chart-failures-by-month",
            body("chart-failures-by-month", _by_month(profile)),
        ),
        _section("Findings", "findings", body("findings", _findings_table(findings, total))),
        _section(
            "Dataset checks (across rows)",
            "dataset-checks",
            body("dataset-checks", _dataset_checks(report, dataset_checks)),
        ),
        _section("DQ profile: per field and event type", "profile", body("profile", _profile_table(profile))),
        '<p class="note">Row is the row number Excel shows (the header is row 1). Personal fields never show '
        f"values ({PID}). Synthetic or real, this page holds no value of a personal field.</p>",
        "</main></body></html>",
    ]
    return "\n".join(parts).encode("utf-8")


def table(ident: str, columns: Sequence[str], rows: Sequence[Sequence[str | int | None]]) -> str:
    """A plain table for an extra section: every cell HTML-escaped, integers right-aligned."""
    head = "".join(f"<th>{escape(c)}</th>" for c in columns)
    cells = "".join(
        "<tr>"
        + "".join(f'<td class="n">{v:,}</td>' if isinstance(v, int) else f"<td>{escape(v or '')}</td>" for v in row)
        + "</tr>"
        for row in rows
    )
    return (
        f'<div class="scroll"><table id="{escape(ident)}"><thead><tr>{head}</tr></thead>'
        f"<tbody>{cells}</tbody></table></div>"
    )


def _section(title: str, ident: str, body: str) -> str:
    return f'<section id="{ident}"><h2>{escape(title)}</h2>{body}</section>'


def _tiles(report: Mapping[str, Any]) -> str:
    rows = int(report.get("rows", 0))
    failed = int(report.get("rows_with_failures", 0))
    tiles = [
        ("Rows", rows, ""),
        ("Rows with failures", failed, "bad" if failed else "good"),
        ("Rows passed", int(report.get("rows_passed", rows - failed)), "good"),
        ("Failed fields", int(report.get("failures", 0)), "bad" if report.get("failures") else "good"),
    ]
    cells = "".join(f'<div class="tile {c}">{escape(label)}<b>{n:,}</b></div>' for label, n, c in tiles)
    extra = ""
    if report.get("missing_columns"):
        extra += f'<p class="note">Columns not in the file: {escape(", ".join(report["missing_columns"]))}</p>'
    return f'<section id="summary"><div class="tiles">{cells}</div>{extra}</section>'


def _hbars(items: Sequence[tuple[str, int]], *, colour: str = _BAR, label_width: int = 260) -> str:
    if not items:
        return '<p class="note">Nothing to show: no failures.</p>'
    row_h, width = 22, 900
    top = max(n for _, n in items) or 1
    plot = width - label_width - 70
    h = row_h * len(items) + 10
    out = [f'<svg class="chart" role="img" viewBox="0 0 {width} {h}" width="100%" style="max-width:{width}px">']
    for i, (label, n) in enumerate(items):
        y = 5 + i * row_h
        w = max(2.0, plot * n / top)
        out.append(
            f'<text x="{label_width - 8}" y="{y + 15}" text-anchor="end" font-size="13">{escape(label)}</text>'
            f'<rect class="bar" x="{label_width}" y="{y + 3}" width="{w:.1f}" height="{row_h - 6}" fill="{colour}">'
            f"<title>{escape(label)}: {n:,}</title></rect>"
            f'<text x="{label_width + w + 6:.1f}" y="{y + 15}" font-size="12">{n:,}</text>'
        )
    out.append("</svg>")
    return "".join(out)


def _failures_by_field(report: Mapping[str, Any]) -> str:
    items = list(report.get("failures_by_field", {}).items())[:30]
    return _hbars([(str(k), int(v)) for k, v in items], colour="#c62828")


def _legend() -> str:
    spans = "".join(f'<span><i style="background:{c}"></i>{escape(v)}</span>' for v, c in VALIDITY_COLOURS.items())
    return f'<p class="legend">{spans}</p>'


def _validity_mix(profile: Mapping[str, Any]) -> str:
    fields = profile.get("fields") or []
    if not fields:
        return '<p class="note">No rows.</p>'
    row_h, width, label_width = 18, 900, 260
    plot = width - label_width - 20
    h = row_h * len(fields) + 10
    out = [f'<svg class="chart" role="img" viewBox="0 0 {width} {h}" width="100%" style="max-width:{width}px">']
    for i, item in enumerate(fields):
        cell = item["by_event_type"][ALL_EVENTS]
        total = cell["rows"] or 1
        y = 5 + i * row_h
        out.append(
            f'<text x="{label_width - 8}" y="{y + 13}" text-anchor="end" font-size="12">{escape(item["field"])}</text>'
        )
        x = float(label_width)
        for v, colour in VALIDITY_COLOURS.items():
            n = cell["validity"].get(v, 0)
            if not n:
                continue
            w = plot * n / total
            out.append(
                f'<rect class="seg" x="{x:.1f}" y="{y + 2}" width="{w:.1f}" height="{row_h - 4}" fill="{colour}">'
                f"<title>{escape(item['field'])}: {escape(v)} {n:,}</title></rect>"
            )
            x += w
    out.append("</svg>")
    return "".join(out)


def _by_month(profile: Mapping[str, Any]) -> str:
    months: dict[str, int] = dict(profile.get("failures_by_event_start_month") or {})
    if not months:
        return '<p class="note">Nothing to show: no failures.</p>'
    undated = months.pop(NO_START_MONTH, 0)
    keys = sorted(months)
    width, h, left, bottom = 900, 260, 50, 60
    out = [f'<svg class="chart" role="img" viewBox="0 0 {width} {h}" width="100%" style="max-width:{width}px">']
    if keys:
        top = max(months.values()) or 1
        slot = (width - left - 10) / len(keys)
        bw = max(2.0, min(40.0, slot * 0.75))
        out.append(f'<line x1="{left}" y1="{h - bottom}" x2="{width - 5}" y2="{h - bottom}" stroke="#777"/>')
        out.append(f'<text x="{left - 6}" y="{16}" text-anchor="end" font-size="11">{top:,}</text>')
        step = max(1, len(keys) // 18)
        for i, k in enumerate(keys):
            n = months[k]
            bh = (h - bottom - 20) * n / top
            x = left + i * slot + (slot - bw) / 2
            out.append(
                f'<rect class="bar" x="{x:.1f}" y="{h - bottom - bh:.1f}" width="{bw:.1f}" height="{bh:.1f}" '
                f'fill="{_BAR}"><title>{escape(k)}: {n:,}</title></rect>'
            )
            if i % step == 0:
                cx = x + bw / 2
                out.append(
                    f'<text x="{cx:.1f}" y="{h - bottom + 14}" font-size="11" text-anchor="end" '
                    f'transform="rotate(-45 {cx:.1f} {h - bottom + 14})">{escape(k)}</text>'
                )
    out.append("</svg>")
    note = f'<p class="note">{undated:,} failures on rows without a valid Event Start Date.</p>' if undated else ""
    return "".join(out) + note


def _findings_table(findings: Sequence[LocatedFinding], total: int) -> str:
    if not findings:
        return '<p class="note">No failed field. The file passes the record-level checks.</p>'
    shown = findings[:MAX_FINDINGS_ON_PAGE]
    head = "".join(f"<th>{escape(c)}</th>" for c in FINDING_COLUMNS)
    rows = []
    for f in shown:
        rows.append(
            f'<tr><td class="n">{f.excel_row}</td><td>{escape(f.event_reference or "")}</td>'
            f"<td>{escape(f.field)}</td><td>{escape(f.status)}</td><td>{escape(f.validity)}</td>"
            f"<td>{escape(f.rule)}</td><td>{escape(f.message)}</td><td>{escape(f.fix)}</td></tr>"
        )
    note = ""
    if total > len(shown):
        note = (
            f'<p class="note">The first {len(shown):,} of {total:,} failed fields are listed here; the workbook '
            "(--xlsx) and the JSON report (--json) list every one.</p>"
        )
    return (
        f'{note}<div class="scroll"><table id="findings-table"><thead><tr>{head}</tr></thead><tbody>'
        + "".join(rows)
        + "</tbody></table></div>"
    )


def _dataset_checks(report: Mapping[str, Any], explicit: Sequence[Mapping[str, Any]] | None) -> str:
    checks = dataset_check_rows(report, explicit)
    if checks is None:
        body = '<p class="note">Not run by this version of cld validate.</p>'
    elif not checks:
        body = '<p class="note">No dataset check found anything.</p>'
    else:
        head = "".join(f"<th>{escape(c)}</th>" for c in DATASET_CHECK_COLUMNS)
        rows = "".join(
            "<tr>"
            + "".join(
                f'<td class="n">{v:,}</td>' if isinstance(v, int) else f"<td>{escape(v or '')}</td>"
                for v in (sev, check, count, rule, shown, expl)
            )
            + "</tr>"
            for sev, check, count, rule, shown, expl in checks
        )
        body = f'<table id="dataset-checks-table"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>'
    warnings = warning_rows(report)
    if warnings:
        head = "".join(f"<th>{escape(c)}</th>" for c in WARNING_COLUMNS)
        rows = "".join(
            f'<tr><td class="n">{"" if r is None else r}</td><td>{escape(fld)}</td><td>{escape(rule)}</td>'
            f"<td>{escape(msg)}</td></tr>"
            for r, fld, rule, msg in warnings[:MAX_FINDINGS_ON_PAGE]
        )
        body += (
            f"<h2>Identity warnings (not failures): {len(warnings):,}</h2>"
            f'<div class="scroll"><table id="warnings-table"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody>'
            "</table></div>"
        )
    return body


def _profile_table(profile: Mapping[str, Any]) -> str:
    fields = profile.get("fields") or []
    if not fields:
        return '<p class="note">No rows.</p>'
    statuses = [s.value for s in FieldStatus]
    validities = [v.value for v in Validity]
    head = "".join(
        f"<th>{escape(c)}</th>"
        for c in ("Field", "Event type", "Rows", *statuses, *validities, "Complete %", "Unchecked", "Invalid values")
    )
    rows = []
    for item in fields:
        values = item.get("invalid_and_unchecked_values")
        if values == PID:
            shown = PID
        elif isinstance(values, dict):
            pairs = list(values.items())
            shown = "; ".join(f"{v} ({n:,})" for v, n in pairs[:10]) + (
                f"; {len(pairs) - 10} more" if len(pairs) > 10 else ""
            )
        else:
            shown = ""
        for event, cell in item["by_event_type"].items():
            nums = "".join(f'<td class="n">{cell["status"][s]:,}</td>' for s in statuses)
            nums += "".join(f'<td class="n">{cell["validity"][v]:,}</td>' for v in validities)
            comp = cell["completeness_percent"]
            rows.append(
                f"<tr><td>{escape(item['field'])}</td><td>{escape(event)}</td>"
                f'<td class="n">{cell["rows"]:,}</td>{nums}<td class="n">{"" if comp is None else comp}</td>'
                f'<td class="n">{cell["unchecked"]:,}</td><td>{escape(shown if event == ALL_EVENTS else "")}</td></tr>'
            )
    body = "".join(rows)
    return (
        f'<div class="scroll"><table id="profile-table"><thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table></div>"
    )
