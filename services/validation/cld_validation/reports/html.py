"""The DQ report as one self-contained HTML page: the shared renderer ``cld_schemas.dqreport.html`` (the
submission service serves the same page for a submission)."""

from __future__ import annotations

from cld_schemas.dqreport.html import MAX_FINDINGS_ON_PAGE, VALIDITY_COLOURS, render_html

__all__ = ["MAX_FINDINGS_ON_PAGE", "VALIDITY_COLOURS", "render_html"]
