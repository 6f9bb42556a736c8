"""Operator endpoints: /healthz (the process is up) and /readyz (it can do its work)."""

from __future__ import annotations

import os
import time

from fastapi import APIRouter
from starlette.responses import Response

from vidgate.api.deps import ServicesDep
from vidgate.api.openai_videos import json_response
from vidgate.store.db import ping

router = APIRouter(tags=["Operators"])


@router.get("/healthz", summary="Liveness")
async def healthz() -> Response:
    """200 while the process serves requests."""
    return json_response({"status": "ok"})


@router.get("/readyz", summary="Readiness")
async def readyz(svc: ServicesDep) -> Response:
    """200 when the database answers, the poller runs and the media folder is writable; 503 naming what fails."""
    checks: dict[str, str] = {}
    try:
        await ping(svc.db, svc.settings.database_url)
        checks["database"] = "ok"
    except Exception as exc:  # any driver error means "not ready", and the reason is shown
        checks["database"] = f"unreachable: {exc.__class__.__name__}: {str(exc)[:200]}"
    stale = time.time() - svc.poller.last_tick
    checks["poller"] = "ok" if svc.poller.running and stale < 30 else "not running"
    media = svc.settings.media_dir
    checks["media_dir"] = "ok" if media.is_dir() and os.access(media, os.W_OK) else f"not writable: {media}"
    failing = [name for name, state in checks.items() if state != "ok"]
    body = {"status": "ok" if not failing else "unavailable", "failing": failing, "checks": checks}
    return json_response(body, status=200 if not failing else 503)
