"""create_app(settings) → the ASGI app; its lifespan owns the database engine, HTTP client and poller."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

from fastapi import FastAPI
from starlette.types import ASGIApp

from vidgate import __version__, netguard, redact
from vidgate.api import admin, callbacks, content, dashscope, docs, errors, openai_videos, playground, usage
from vidgate.api.content import ContentFastPath
from vidgate.api.deps import Services
from vidgate.api.fast import StatusFastPath
from vidgate.api.limits import FORM_OVERHEAD, BodyLimit
from vidgate.api.middleware import Measure, RequestId
from vidgate.api.schemas import openapi_document
from vidgate.auth import KeyRing
from vidgate.config import Settings
from vidgate.engine.callbacks import CallbackSigner
from vidgate.engine.health import ChannelHealth
from vidgate.engine.poller import Poller
from vidgate.engine.submit import Submitter
from vidgate.engine.webhooks import Deliverer
from vidgate.metrics import Metrics
from vidgate.providers.registry import build_registry
from vidgate.redact import Redactor
from vidgate.shared_state import shared_for
from vidgate.storage import from_settings as storage_from_settings
from vidgate.store import hot
from vidgate.store.db import check_secret, close_reader, create_engine, migrate

log = logging.getLogger("vidgate")

# Shutdown (SPEC §4): uvicorn gives in-flight requests SHUTDOWN_REQUESTS_S (cli.py); then the background
# loops get BACKGROUND_STOP_S together and renders are stopped, so the process is gone well within 15 s.
SHUTDOWN_REQUESTS_S = 10
BACKGROUND_STOP_S = 3.0

DESCRIPTION = """One key and one API for video generation: the OpenAI Videos API and the DashScope
video-synthesis API in front of Wan, Kling, Jimeng, Vidu, any OpenAI-format video API and a built-in local renderer."""


def create_app(settings: Settings) -> ASGIApp:
    """The vidgate ASGI app for these settings: the FastAPI app, behind the status-read fast path and the
    request-body cap, with an x-request-id and request metrics on every response."""
    settings = settings.with_secret()
    metrics = Metrics()
    running: dict[str, Services] = {}

    redactor = Redactor.for_settings(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # In each process (uvicorn workers too): no secret leaves it through a log line.
        redact.install(redactor)
        settings.media_dir.mkdir(parents=True, exist_ok=True)
        migrate(settings.database_url, secret=settings.secret)
        db = create_engine(settings.database_url, secret=settings.secret, redactor=redactor)
        await check_secret(db)
        # The status read's and the create path's own way to the database (PostgreSQL: an asyncpg pool).
        await hot.start(db)
        # Calls to a channel's own base_url host go out as they are; every other URL (inputs, results,
        # webhooks) only reaches public addresses, unless its caller's policy says otherwise.
        configured = frozenset(netguard.host_of(channel.base_url) for channel in settings.channels if channel.base_url)
        http = netguard.client(policy=netguard.Policy(hosts=configured))
        registry = build_registry(settings, http)
        # Per process, or shared by every process and replica through Redis (rpm, breakers, revocations).
        shared = shared_for(settings.redis_url)
        await shared.start()
        health = ChannelHealth(
            db, threshold=settings.breaker_threshold, cooldown_s=settings.breaker_cooldown_s, shared=shared
        )
        await health.start()
        storage = storage_from_settings(settings)
        log.info("stored media go to %s", storage.describe())
        # Providers that accept a callback URL get vidgate's signed one for each task (engine/callbacks.py).
        signer = CallbackSigner(settings.secret)
        submitter = Submitter(
            settings=settings,
            db=db,
            registry=registry,
            http=http,
            health=health,
            metrics=metrics,
            storage=storage,
            callback_url=partial(signer.url, settings.public_url),
        )
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
            provider.use_database(db)
            provider.use_storage(storage)
            await provider.start(poller.wake)
        poller.start()
        deliverer.start()
        keys = KeyRing(db, shared=shared)
        await keys.start()
        app.state.services = running["svc"] = Services(
            settings=settings,
            db=db,
            http=http,
            registry=registry,
            keys=keys,
            submitter=submitter,
            poller=poller,
            metrics=metrics,
            storage=storage,
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
            await keys.stop()
            try:
                # Unfinished polls and deliveries are leased: whatever is cut off here is taken up again.
                stopping = asyncio.gather(deliverer.stop(), poller.stop(grace_s=BACKGROUND_STOP_S - 1))
                await asyncio.wait_for(stopping, timeout=BACKGROUND_STOP_S)
            except TimeoutError:
                log.warning("background loops did not stop within %.0f s; cancelled", BACKGROUND_STOP_S)
            for provider in registry.providers.values():
                await provider.close()
            await storage.close()
            await http.aclose()
            await shared.close()
            close_reader(db)
            await hot.stop(db)
            await db.dispose()

    app = FastAPI(
        title="vidgate",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        # /docs is served from the package's own copy of Swagger UI (api/docs.py), never from a CDN.
        docs_url=None,
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
    app.include_router(docs.router)
    app.include_router(usage.router)
    app.include_router(callbacks.router)
    capped = BodyLimit(app, limit=settings.max_upload_bytes + FORM_OVERHEAD)
    # The status and content fast paths read no body, so they sit outside the cap (the hottest routes).
    return Measure(RequestId(StatusFastPath(ContentFastPath(capped, running), running)), metrics=metrics)
