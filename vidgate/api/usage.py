"""GET /v1/usage (the calling key's spend and quota) and GET /metrics (Prometheus)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.responses import Response

from vidgate.api.deps import KeyDep, ServicesDep
from vidgate.api.openai_videos import json_response
from vidgate.api.schemas import KEYED, Usage, openai_errors, text
from vidgate.auth import bearer_matches
from vidgate.engine.pricing import from_micros
from vidgate.errors import Unauthenticated
from vidgate.store import tasks as task_store
from vidgate.store import usage as usage_store

router = APIRouter(tags=["Usage"])


def usd(micros: int) -> str:
    """Money as an exact decimal string (JSON numbers would be binary floats)."""
    return str(from_micros(micros))


@router.get(
    "/v1/usage", summary="Spend and quota of the calling key", response_model=Usage, responses=openai_errors(*KEYED)
)
async def get_usage(svc: ServicesDep, key: KeyDep) -> Response:
    """Spend by model and UTC day (reservations of unfinished videos included), and the remaining quota."""
    spent = await usage_store.spent(svc.db, key_id=key.id)
    days = await usage_store.by_model_and_day(svc.db, key_id=key.id)
    quota = key.quota_micros
    return json_response(
        {
            "object": "usage",
            "key_id": key.id,
            "spent_usd": usd(spent),
            "quota_usd": usd(quota) if quota is not None else None,
            "remaining_usd": usd(max(0, quota - spent)) if quota is not None else None,
            "data": [
                {"date": day.day, "model": day.model, "amount_usd": usd(day.amount_micros), "videos": day.videos}
                for day in days
            ],
        }
    )


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    tags=["Operators"],
    response_class=Response,
    responses={
        200: text("Prometheus text exposition format."),
        **openai_errors(401, 500),
    },
)
async def metrics(request: Request, svc: ServicesDep) -> Response:
    """Requests, submit latency, tasks by state, poll outcomes, channel health, spend.

    With `metrics_token` configured, only for `Authorization: Bearer <metrics_token>`."""
    token = svc.settings.metrics_token
    if token and not bearer_matches(request.headers.get("authorization"), token):
        raise Unauthenticated("/metrics needs 'Authorization: Bearer <metrics_token>'.", code="invalid_metrics_token")
    m = svc.metrics
    for state, count in (await task_store.count_by_status(svc.db)).items():
        m.tasks.labels(state).set(count)
    in_flight = await task_store.in_flight_by_channel(svc.db)
    for channel in svc.registry.channels:
        m.channel_in_flight.labels(channel.name).set(in_flight.get(channel.name, 0))
        m.channel_up.labels(channel.name, channel.provider).set(0 if svc.submitter.health.is_open(channel.name) else 1)
    for model, micros in (await usage_store.spent_by_model(svc.db)).items():
        m.spend.labels(model).set(float(from_micros(micros)))
    return Response(generate_latest(m.registry), media_type=CONTENT_TYPE_LATEST)
