"""The pages' stylesheet and script, served from ``server/static`` by name (no directory walk)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, Response

STATIC = Path(__file__).resolve().parents[1] / "static"
TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8"}
FILES = {p.name: p for p in STATIC.iterdir() if p.suffix in TYPES} if STATIC.is_dir() else {}

router = APIRouter(include_in_schema=False)


@router.get("/static/{name}")
def static_file(name: str) -> Response:
    """A file shipped in ``server/static``; any other name is 404 (no path reaches the disk)."""
    path = FILES.get(name)
    if path is None:
        return Response("not found", status_code=404, media_type="text/plain")
    return FileResponse(path, media_type=TYPES[path.suffix],
                        headers={"Cache-Control": "public, max-age=3600",
                                 "X-Content-Type-Options": "nosniff"})
