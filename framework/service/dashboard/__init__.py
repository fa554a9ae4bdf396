"""The live dashboard (``GET /``): one HTML page, its CSS and JS served from this folder.

No request leaves the service: no CDN, no web font; the page fetches the JSON API and
renders every value with ``textContent`` (API text is data, never markup).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

HERE = Path(__file__).resolve().parent
router = APIRouter(include_in_schema=False)

_TYPES = {"dashboard.css": "text/css; charset=utf-8",
          "dashboard.js": "text/javascript; charset=utf-8"}


@router.get("/")
def index() -> FileResponse:
    return FileResponse(HERE / "index.html", media_type="text/html; charset=utf-8")


@router.get("/static/{name}")
def static(name: str) -> FileResponse:
    from framework.service.problems import Problem

    if name not in _TYPES:
        raise Problem(404, f"no static file {name!r}")
    return FileResponse(HERE / name, media_type=_TYPES[name])
