"""create_app(settings) → the ASGI app; its lifespan owns the database engine, HTTP client and poller."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

import httpx
from fastapi import FastAPI
from starlette.types import ASGIApp

from vidgate import __version__
from vidgate.api import admin, content, dashscope, errors, openai_videos, playground, usage
from vidgate.api.deps import Services
from vidgate.api.fast import StatusFastPath
from vidgate.api.middleware import Measure, RequestId
from vidgate.api.schemas import openapi_document
from vidgate.auth import KeyRing
from vidgate.config import Settings
from vidgate.engine.health import ChannelHealth
from vidgate.engine.poller import Poller
from vidgate.engine.submit import Submitter
from vidgate.engine.webhooks import Deliverer
from vidgate.metrics import Metrics
from vidgate.providers.registry import build_registry
from vidgate.store.db import close_reader, create_engine, migrate

log = logging.getLogger("vidgate")

# Shutdown (SPEC §4): uvicorn gives in-flight requests SHUTDOWN_REQUESTS_S (cli.py); then the background
# loops get BACKGROUND_STOP_S together and renders are stopped, so the process is gone well within 15 s.
SHUTDOWN_REQUESTS_S = 10
BACKGROUND_STOP_S = 3.0

DESCRIPTION = """One key and one API for video generation: the OpenAI Videos API and the DashScope
video-synthesis API in front of Sora, Wan, Kling, Jimeng, Vidu and a built-in local renderer."""


def create_app(settings: Settings) -> ASGIApp:
    """The vidgate ASGI app for these settings: the FastAPI app, behind the status-read fast path, with an
    x-request-id and request metrics on every response."""
    settings = settings.with_secret()
    metrics = Metrics()
    running: dict[str, Services] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        settings.media_dir.mkdir(parents=True, exist_ok=True)
        migrate(settings.database_url)
        db = create_engine(settings.database_url)
        http = httpx.AsyncClient(timeout=httpx.Timeout(30.0, connect=10.0), follow_redirects=False)
        registry = build_registry(settings, http)
        health = ChannelHealth(db, threshold=settings.breaker_threshold, cooldown_s=settings.breaker_cooldown_s)
        submitter = Submitter(settings=settings, db=db, registry=registry, http=http, health=health, metrics=metrics)
        deliverer = Deliverer(settings=settings, db=db, http=http, metrics=metrics)
        poller = Poller(
            settings=settings,
            db=db,
            registry=registry,
            submitter=submitter,
            metrics=metrics,
            webhooks_due=deliverer.wake,
        )
        submitter.on_created = poller.wake
        for provider in registry.providers.values():
            await provider.start(poller.wake)
        poller.start()
        deliverer.start()
        app.state.services = running["svc"] = Services(
            settings=settings,
            db=db,
            http=http,
            registry=registry,
            keys=KeyRing(db),
            submitter=submitter,
            poller=poller,
            metrics=metrics,
        )
        # Everything built so far lives as long as the process: keep the collector from rescanning it on
        # every full collection (those pauses showed as the p99 of status reads).
        gc.collect()
        gc.freeze()
        log.info(
            "vidgate %s ready: %d models on %d channels", __version__, len(registry.models()), len(registry.channels)
        )
        try:
            yield
        finally:
            running.clear()
            try:
                # Unfinished polls and deliveries are leased: whatever is cut off here is taken up again.
                stopping = asyncio.gather(deliverer.stop(), poller.stop(grace_s=BACKGROUND_STOP_S - 1))
                await asyncio.wait_for(stopping, timeout=BACKGROUND_STOP_S)
            except TimeoutError:
                log.warning("background loops did not stop within %.0f s; cancelled", BACKGROUND_STOP_S)
            for provider in registry.providers.values():
                await provider.close()
            await http.aclose()
            close_reader(db)
            await db.dispose()

    app = FastAPI(
        title="vidgate",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
    )
    errors.install(app)
    app.openapi = partial(openapi_document, app)  # type: ignore[method-assign]
    app.include_router(openai_videos.router)
    app.include_router(content.router)
    app.include_router(content.files_router)
    app.include_router(dashscope.router, prefix="/api/v1")
    # The path the product's users already call (a DashScope endpoint as resold under /alibailian).
    app.include_router(dashscope.router, prefix="/alibailian/api/v1", include_in_schema=False)
    app.include_router(admin.router)
    app.include_router(playground.router)
    app.include_router(usage.router)
    return Measure(RequestId(StatusFastPath(app, running)), metrics=metrics)
