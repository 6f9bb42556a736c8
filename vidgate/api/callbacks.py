"""`POST /callbacks/{provider}/{task_id}?sig=…`: an upstream says a task changed (SPEC §4 "Upstream callbacks").

Public (the upstream has no API key) and cheap: the signature is checked before anything else, the body is read
only for a valid one and only up to callbacks.MAX_BODY_BYTES, and it is never trusted or parsed for state. A
valid call makes the poller read the task from its upstream at once (engine/poller.Poller.called_back); a forged
signature, another task's id, an unknown or finished task, or a replay changes nothing. Every call gets the
same answer, except that a provider may answer a handshake its upstream asks for (Provider.callback_answer).
"""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response

from vidgate.api.deps import ServicesDep
from vidgate.engine import callbacks

router = APIRouter(tags=["Upstream callbacks"])

_ANSWER = orjson.dumps(callbacks.ANSWER)


def _uniform() -> Response:
    return Response(_ANSWER, media_type="application/json")


async def _capped_body(request: Request) -> bytes | None:
    """The body, or None when it is longer than the cap (the rest is left unread)."""
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > callbacks.MAX_BODY_BYTES:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > callbacks.MAX_BODY_BYTES:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


@router.post(
    "/callbacks/{provider}/{task_id}",
    summary="An upstream's task callback (no API key; signed URL)",
    response_class=Response,
    responses={200: {"description": 'Always `{"ok": true}` (or the answer to a handshake the upstream asks for).'}},
)
async def upstream_callback(provider: str, task_id: str, request: Request, svc: ServicesDep) -> Response:
    """A wake-up for one task: vidgate reads the task from the upstream at once. The body is not trusted."""
    known = svc.registry.providers.get(provider)
    sig = request.query_params.get("sig", "")
    if known is None or not known.accepts_callback or not svc.poller.signer.verify(provider, task_id, sig):
        return _uniform()
    body = await _capped_body(request)
    answer = known.callback_answer(body) if body is not None else None
    if answer is not None:
        return Response(orjson.dumps(answer), media_type="application/json")
    svc.poller.called_back(provider, task_id)
    return _uniform()
