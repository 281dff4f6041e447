"""The web page: GET / and its static files, with plotly.min.js served from the installed plotly package."""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass
from functools import cache
from importlib import resources

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, Response

router = APIRouter(include_in_schema=False)

# The page files live in api/http/web/ (package data); plotly.min.js comes from the plotly wheel so the page
# works on clusters with no internet access.
JS = "text/javascript; charset=utf-8"
PAGE_FILES = {
    "app.js": JS,
    "sse.js": JS,
    "plots.js": JS,
    "form.js": JS,
    "artifacts.js": JS,
    "exports.js": JS,
    "style.css": "text/css; charset=utf-8",
}
PLOTLY_FILE = "plotly.min.js"
# Asset URLs carry a content hash (?v=...), so browsers may keep them for a year without going stale.
ASSET_CACHE_S = 365 * 24 * 3600
# Compressing plotly.min.js (~4.7 MB) cuts it to about a third; small files are not worth it.
GZIP_MIN_BYTES = 1024


@dataclass(frozen=True)
class Asset:
    """One static file, held in memory with its gzip form and a short content hash."""

    body: bytes
    gzipped: bytes
    media_type: str
    version: str


def _asset(body: bytes, media_type: str) -> Asset:
    gzipped = gzip.compress(body, compresslevel=6, mtime=0) if len(body) >= GZIP_MIN_BYTES else b""
    return Asset(body, gzipped, media_type, hashlib.sha256(body).hexdigest()[:12])


def _page_file(name: str) -> bytes:
    return resources.files("evoprune.api.http").joinpath("web", name).read_bytes()


@cache
def _static(name: str) -> Asset:
    if name == PLOTLY_FILE:
        try:
            body = resources.files("plotly").joinpath("package_data", PLOTLY_FILE).read_bytes()
        except (ModuleNotFoundError, FileNotFoundError) as error:
            # plotly is a declared dependency; this only happens in a broken install
            raise HTTPException(
                status_code=503, detail=f"plotly.min.js is not available ({error}); reinstall evoprune"
            ) from None
        return _asset(body, JS)
    return _asset(_page_file(name), PAGE_FILES[name])


@cache
def _index_html() -> str:
    # Fill in the asset versions once; the HTML itself is never cached, so a new release shows at once.
    html = _page_file("index.html").decode()
    for name in (*PAGE_FILES, PLOTLY_FILE):
        html = html.replace("{{version:" + name + "}}", _static(name).version)
    return html


# the page runs only its own files: no inline or foreign scripts, no framing; plotly sets inline styles
PAGE_SECURITY_HEADERS = {
    "Content-Security-Policy": "; ".join(
        [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self' 'unsafe-inline'",
            "img-src 'self' data: blob:",
            "connect-src 'self'",
            "font-src 'self' data:",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    ),
    "Referrer-Policy": "no-referrer",
}


def warm() -> None:
    """Read the page and its files into memory, so that serving them never touches the disk or a thread."""
    _index_html()


@router.get("/", response_class=HTMLResponse)
async def index() -> HTMLResponse:
    """The single-page web interface: experiments, the config form and the live Pareto front.

    Returns:
        The page, marked not to be cached.

    """
    return HTMLResponse(_index_html(), headers={"Cache-Control": "no-cache", **PAGE_SECURITY_HEADERS})


@router.api_route("/static/{name}", methods=["GET", "HEAD"])
async def static_file(name: str, request: Request) -> Response:
    """One of the page's static files, or plotly.min.js from the installed plotly package.

    Args:
        name: a page file (app.js, sse.js, plots.js, form.js, artifacts.js, exports.js, style.css) or
            plotly.min.js.
        request: used for its Accept-Encoding header.

    Returns:
        The file, gzip-compressed when the client accepts it, cacheable for a year.

    """
    if name not in PAGE_FILES and name != PLOTLY_FILE:
        known = ", ".join([*PAGE_FILES, PLOTLY_FILE])
        raise HTTPException(status_code=404, detail=f"no static file {name!r}; known: {known}")
    asset = _static(name)
    headers = {"Cache-Control": f"public, max-age={ASSET_CACHE_S}, immutable", "Vary": "Accept-Encoding"}
    if asset.gzipped and "gzip" in request.headers.get("accept-encoding", ""):
        headers["Content-Encoding"] = "gzip"
        return Response(asset.gzipped, media_type=asset.media_type, headers=headers)
    return Response(asset.body, media_type=asset.media_type, headers=headers)
