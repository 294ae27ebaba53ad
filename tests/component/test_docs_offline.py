"""The /docs (Swagger UI) and /redoc pages of the HTTP services load nothing from outside (issue 10: they loaded
their assets from a CDN and were blank offline): every URL in the page is this app's own, and answers 200."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cld_governance.tenancy import open_registry

_URL_IN_PAGE = re.compile(r"""(?:src|href|url)\s*[:=]\s*['"]([^'"]+)['"]""")
_ABSOLUTE = re.compile(r"""(?:https?:)?//[A-Za-z0-9.-]+""")


def _ingest(tmp: Path) -> Any:
    from cld_ingest.service import IngestSettings, create_app

    return create_app(IngestSettings(kafka_bootstrap_servers="127.0.0.1:1"), tenants=open_registry())


def _submission(tmp: Path) -> Any:
    from cld_submission.entrypoints.app import create_app
    from cld_submission.entrypoints.settings import SubmissionSettings

    settings = SubmissionSettings(
        kafka_bootstrap_servers="127.0.0.1:1", state_dir=tmp / "state", export_dir=tmp / "export"
    )
    return create_app(settings, tenants=open_registry())


@pytest.fixture(params=["ingest", "submission"])
async def client(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    app = {"ingest": _ingest, "submission": _submission}[request.param](tmp_path)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://svc") as c:
        yield c


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_docs_pages_reference_only_their_own_assets(client: httpx.AsyncClient, page: str) -> None:
    r = await client.get(page)
    assert r.status_code == 200
    html = r.text
    assert not _ABSOLUTE.search(html), f"{page} names an external host: {_ABSOLUTE.findall(html)}"
    urls = _URL_IN_PAGE.findall(html)
    assets = [u for u in urls if u.startswith("/docs-static/")]
    assert assets, urls  # the JS (and CSS) really come from the app
    for url in urls:
        assert url.startswith("/"), url
        answer = await client.get(url)
        assert answer.status_code == 200, url
        assert answer.content, url
    kinds = {u.rsplit(".", 1)[-1] for u in assets}
    assert "js" in kinds


async def test_the_swagger_page_turns_the_public_validator_off(client: httpx.AsyncClient) -> None:
    html = (await client.get("/docs")).text
    assert '"validatorUrl": null' in html
    assert (await client.get("/openapi.json")).json()["openapi"].startswith("3.")
