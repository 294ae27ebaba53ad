"""Transparency material generated from the spec data and the sharing policy (issue 6 section 3)."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from cld_cli import cmd_transparency
from cld_cli.transparency import build_notice, render_html, render_markdown
from cld_governance.loaders import default_policy, save_registry
from cld_governance.sharing import parse_policy
from cld_governance.tenancy import Registry, Tenant
from cld_schemas.spec import load_spec

LA = "318"
HOSTILE = '<script>alert("x")</script> & [link](javascript:alert(1))'


def _both(**kwargs: Any) -> dict[str, str]:
    notice = build_notice(la_code=LA, **kwargs)
    return {"md": render_markdown(notice), "html": render_html(notice)}


def _text_of(fmt: str, text: str) -> str:
    return html.escape(text, quote=True) if fmt == "html" else text


@pytest.mark.parametrize("fmt", ["md", "html"])
def test_every_spec_field_header_is_listed(fmt: str) -> None:
    out = _both()[fmt]
    missing = [f.header for f in load_spec().fields if _text_of(fmt, f.header) not in out]
    assert missing == []


@pytest.mark.parametrize("fmt", ["md", "html"])
def test_it_states_the_legal_basis_purposes_and_that_opt_outs_do_not_apply(fmt: str) -> None:
    out = _both(la_name="Example Borough Council")[fmt]
    nhse = default_policy().nhs_england
    assert nhse.legal_basis is not None
    for instrument in nhse.legal_basis.instruments:
        assert _text_of(fmt, instrument) in out
    assert "Collection of Adult Social Care Client Level Data (No 3) Directions 2023" in out
    for purpose in nhse.purposes:
        assert _text_of(fmt, purpose) in out
    assert "the national data opt-out do not apply to this sharing" in out
    assert "neither your right to object under the UK GDPR nor the national data opt-out applies" in out
    assert _text_of(fmt, "NHS England's Adult Social Care Client Level Data pages") in out
    assert _text_of(fmt, "Information Commissioner's Office (ICO)") in out
    assert "pseudonymises the data before it shares it" in out
    assert "Example Borough Council" in out


def test_html_escapes_every_text_and_loads_nothing_external() -> None:
    data: dict[str, Any] = json.loads(json.dumps(default_policy().model_dump(mode="json")))
    data["recipients"][0]["purposes"].append('<img src=x onerror="alert(1)">')
    out = render_html(build_notice(la_code=LA, la_name=HOSTILE, policy=parse_policy(data)), standalone=True)
    assert "<script" not in out
    assert "<img" not in out
    assert html.escape(HOSTILE, quote=True) in out
    assert html.escape('<img src=x onerror="alert(1)">', quote=True) in out
    opening_tags = re.findall(r"<[a-z][^>]*>", out)
    assert not [t for t in opening_tags if re.search(r"\b(src|href|style|on[a-z]+)=", t)]
    tags = set(re.findall(r"</?([a-z0-9]+)", out))
    assert tags <= {"html", "head", "meta", "title", "body", "section", "h2", "h3", "h4", "p", "ul", "li", "small"}


def test_markdown_escapes_markup_in_names() -> None:
    out = render_markdown(build_notice(la_code=LA, la_name=HOSTILE))
    assert "<script>" not in out
    assert "[link](" not in out
    assert r"\<script\>" in out
    assert r"\[link\]" in out


def test_other_recipients_appear_only_with_a_basis_for_this_la() -> None:
    data: dict[str, Any] = json.loads(json.dumps(default_policy().model_dump(mode="json")))
    data["recipients"].append(
        {
            "id": "partner-icb",
            "name": "Partner Integrated Care Board",
            "legal_basis": {"summary": "A data sharing agreement.", "la_codes": [LA]},
            "purposes": ["population health planning"],
        }
    )
    policy = parse_policy(data)
    mine = render_markdown(build_notice(la_code=LA, policy=policy))
    assert "Partner Integrated Care Board" in mine
    assert "population health planning" in mine
    assert "opt-out apply to this sharing" in mine
    assert "pseudonymised" in mine
    assert "Example Integrated Care Board" not in mine  # no legal basis recorded: nothing shared, not named
    other_la = render_markdown(build_notice(la_code="319", policy=policy))
    assert "Partner Integrated Care Board" not in other_la


# ---- the command --------------------------------------------------------------------------------------


def _app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        """Test root."""

    cmd_transparency.register(app)
    return app


def test_cli_takes_the_la_name_from_the_tenants_registry(tmp_path: Path) -> None:
    reg = tmp_path / "tenants.json"
    save_registry(Registry(tenants=(Tenant(la_code=LA, name="Example Borough <Council>"),)), reg)
    out = tmp_path / "notice.html"
    result = CliRunner().invoke(
        _app(), ["transparency", "--la", LA, "--format", "html", "--tenants", str(reg), "--out", str(out)]
    )
    assert result.exit_code == 0, result.stderr
    text = out.read_text(encoding="utf-8")
    assert "Example Borough &lt;Council&gt;" in text
    assert 'data-la-code="318"' in text


def test_cli_writes_markdown_to_stdout_by_default() -> None:
    result = CliRunner().invoke(_app(), ["transparency", "--la", LA])
    assert result.exit_code == 0
    assert result.stdout.startswith("## Local authority 318")


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--la", "31"], "3-digit"), (["--la", "999", "--tenants", "TENANTS"], "not a tenant")],
)
def test_cli_refuses_bad_input_clearly(tmp_path: Path, args: list[str], message: str) -> None:
    reg = tmp_path / "tenants.json"
    save_registry(Registry(tenants=(Tenant(la_code=LA, name="A"),)), reg)
    result = CliRunner().invoke(_app(), ["transparency", *[str(reg) if a == "TENANTS" else a for a in args]])
    assert result.exit_code == 2
    assert message in result.stderr
    assert result.stdout == ""
