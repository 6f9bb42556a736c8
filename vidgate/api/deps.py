"""What request handlers share: the app's services, and the authenticated key."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import httpx
from fastapi import Depends, Request
from fastapi.security import HTTPBearer
from sqlalchemy.ext.asyncio import AsyncEngine

from vidgate.auth import KeyRing
from vidgate.config import Settings
from vidgate.engine.poller import Poller
from vidgate.engine.submit import Submitter
from vidgate.metrics import Metrics
from vidgate.providers.registry import Registry
from vidgate.storage import Storage
from vidgate.store.keys import KeyRecord


@dataclass
class Services:
    """Everything the lifespan builds; one per app, reached through request.app.state.services."""

    settings: Settings
    db: AsyncEngine
    http: httpx.AsyncClient
    registry: Registry
    keys: KeyRing
    submitter: Submitter
    poller: Poller
    metrics: Metrics
    storage: Storage


async def services(request: Request) -> Services:
    found: Services = request.app.state.services
    return found


ServicesDep = Annotated[Services, Depends(services)]


# Declares `Authorization: Bearer <key>` on the routes that need a key (OpenAPI, /docs' Authorize button);
# it never refuses a request itself: authenticated_key does, in the surface's own error shape.
bearer = HTTPBearer(auto_error=False, scheme_name="APIKey", description="An API key, `sk-vg-…`.")


async def authenticated_key(request: Request, svc: ServicesDep, _declared: object = Depends(bearer)) -> KeyRecord:
    """The key from `Authorization: Bearer`, with its requests-per-minute limit applied."""
    record = await svc.keys.authenticate(request.headers.get("authorization"))
    await svc.keys.check_rate(record)
    return record


KeyDep = Annotated[KeyRecord, Depends(authenticated_key)]
