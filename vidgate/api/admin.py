"""Operator endpoints: /healthz (the process is up) and /readyz (it can do its work)."""

from __future__ import annotations

import logging
import os
import time

from fastapi import APIRouter
from starlette.responses import Response

from vidgate.api.deps import ServicesDep
from vidgate.api.openai_videos import json_response
from vidgate.api.schemas import Health, Ready
from vidgate.errors import StorageUnavailable
from vidgate.store.db import ping

router = APIRouter(tags=["Operators"])
log = logging.getLogger("vidgate.api")

# What /readyz says about a failing check: a fixed sentence; the cause (exception text, paths) goes to the log.
FAILED = {
    "database": "The database does not answer.",
    "poller": "The poller is not running.",
    "media_dir": "The media folder is not writable.",
    "storage": "The storage does not answer.",
}


@router.get("/healthz", summary="Liveness", response_model=Health)
async def healthz() -> Response:
    """200 while the process serves requests."""
    return json_response({"status": "ok"})


@router.get(
    "/readyz",
    summary="Readiness",
    response_model=Ready,
    responses={503: {"model": Ready, "description": "Not ready: `failing` names the checks that fail."}},
)
async def readyz(svc: ServicesDep) -> Response:
    """200 when the database answers, the poller runs, the media folder is writable and the storage answers; 503
    naming what fails."""
    ok: dict[str, bool] = {}
    try:
        await ping(svc.db, svc.settings.database_url)
        ok["database"] = True
    except Exception:  # any driver error means "not ready"; the operator reads why in the log
        log.warning("readyz: the database does not answer", exc_info=True)
        ok["database"] = False
    stale = time.time() - svc.poller.last_tick
    ok["poller"] = svc.poller.running and stale < 30
    if not ok["poller"]:
        log.warning("readyz: the poller is not running (last tick %.0f s ago)", stale)
    media = svc.settings.media_dir
    ok["media_dir"] = media.is_dir() and os.access(media, os.W_OK)
    if not ok["media_dir"]:
        log.warning("readyz: the media folder %s is not writable", media)
    try:
        await svc.storage.check()
        ok["storage"] = True
    except StorageUnavailable as exc:
        log.warning("readyz: the storage (%s) does not answer: %s", svc.storage.describe(), exc)
        ok["storage"] = False
    failing = [name for name, good in ok.items() if not good]
    checks = {name: "ok" if good else FAILED[name] for name, good in ok.items()}
    body = {"status": "ok" if not failing else "unavailable", "failing": failing, "checks": checks}
    return json_response(body, status=200 if not failing else 503)
