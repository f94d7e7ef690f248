"""The status page: one HTML page, its script and its style sheet, served as they are (no build
step, no framework). The page asks for the organization id, the function key and the admin key,
keeps them in memory (or the tab's sessionStorage), sends them in headers only, and renders
``GET .../status`` with ``textContent`` (never HTML made from data).

Every file is answered with a strict Content-Security-Policy: scripts, styles and requests from
this origin only, no inline script or style, no framing, no forms posted anywhere.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Final

from shared.http.answers import HttpAnswer

_FOLDER = Path(__file__).resolve().parent

# The files served, by the name the routes use, and their media types.
FILES: Final = {
    "index.html": "text/html",
    "app.js": "text/javascript",
    "style.css": "text/css",
}

CONTENT_SECURITY_POLICY: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

SECURITY_HEADERS: Final = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cache-Control": "no-store",
}


@lru_cache(maxsize=len(FILES))
def _text(name: str) -> str:
    return (_FOLDER / name).read_text(encoding="utf-8")


def page_file(name: str) -> HttpAnswer:
    """One of :data:`FILES`, with the page's security headers."""
    return HttpAnswer(200, None, SECURITY_HEADERS, text=_text(name), text_type=FILES[name])
