"""Veo on the Gemini API, emulated (reference/providers-2026.md §2.2, §2.4, §2.6).

`x-goog-api-key` (or `?key=`) auth; `POST /v1beta/models/{m}:predictLongRunning` validated per model;
`GET /v1beta/{operation name}` with done/response/error; the filtered outcome (`raiMediaFilteredCount`) for a
prompt containing FILTER_TRIGGER; `GET /v1beta/files/{id}:download?alt=media` needing the key, gone (404) once
the file's time is up (2 days upstream; `file_ttl_s` here). Faults: "submit", "poll", "download".
"""

from __future__ import annotations

import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from tests.fakes.base import FakeUpstream, Fault, InjectedFault, Recorded
from tests.fakes.veo import (
    FAIL_MESSAGE,
    FILTER_REASON,
    GoogleError,
    Operation,
    OperationStore,
    Rules,
    check_common,
    check_fields,
    check_instance,
    fault_error,
    parse_json,
    samples_of,
)

_ALL = frozenset({"image", "lastFrame", "referenceImages", "video"})
_FRAMES = frozenset({"image", "lastFrame"})
MODELS: dict[str, Rules] = {
    "veo-3.1-generate-preview": Rules(_ALL, ("720p", "1080p", "4k"), (4, 6, 8), frozenset({"1080p", "4k"})),
    "veo-3.1-fast-generate-preview": Rules(_ALL, ("720p", "1080p", "4k"), (4, 6, 8), frozenset({"1080p", "4k"})),
    "veo-3.1-lite-generate-preview": Rules(_FRAMES, ("720p", "1080p"), (4, 6, 8), frozenset({"1080p"})),
    "veo-3.0-generate-001": Rules(_FRAMES, ("720p", "1080p"), (4, 6, 8), wide_only=frozenset({"1080p"})),
    "veo-3.0-fast-generate-001": Rules(_FRAMES, ("720p", "1080p"), (4, 6, 8), wide_only=frozenset({"1080p"})),
}
PARAMETERS = frozenset(
    {
        "aspectRatio",
        "durationSeconds",
        "resolution",
        "negativePrompt",
        "personGeneration",
        "sampleCount",
        "enhancePrompt",
    }
)
# What the SDK refuses on this API (§2.2): named in a refusal rather than "unknown".
NOT_ON_GEMINI = frozenset(
    {
        "seed",
        "generateAudio",
        "fps",
        "storageUri",
        "pubsubTopic",
        "mask",
        "compressionQuality",
        "labels",
        "resizeMode",
        "gcsUri",
    }
)
FILE_TTL_S = 2 * 24 * 3600.0


class FakeGemini(FakeUpstream):
    """The Gemini API's Veo surface; `polls_per_step` operation reads until done."""

    name = "gemini"

    def __init__(self, api_key: str = "AIza-test-key", polls_per_step: int = 1) -> None:
        self.api_key = api_key
        self.polls_per_step = polls_per_step
        self.store = OperationStore(polls_per_step)
        self.downloads: dict[str, tuple[bytes, float]] = {}  # file id -> (bytes, expires at)
        super().__init__()
        self.file_ttl_s = FILE_TTL_S

    def reset(self) -> None:
        self.history.clear()
        self.faults.clear()
        self.store.ops.clear()
        self.store.polls_per_step = self.polls_per_step
        self.downloads.clear()
        self.file_ttl_s = FILE_TTL_S

    def routes(self) -> list[BaseRoute]:
        return [Route("/v1beta/{rest:path}", self._dispatch, methods=["GET", "POST"])]

    def fault_response(self, kind: Fault) -> Response:
        return fault_error(kind).response()

    # -- dispatch ---------------------------------------------------------------------------------------------

    async def _dispatch(self, request: Request) -> Response:
        entry = await self.record(request)
        rest = request.path_params["rest"]
        try:
            self._authenticate(entry)
            if request.method == "POST" and rest.startswith("models/") and rest.endswith(":predictLongRunning"):
                return await self._submit(entry, rest.removeprefix("models/").removesuffix(":predictLongRunning"))
            if request.method == "GET" and rest.startswith("models/") and "/operations/" in rest:
                return await self._operation(rest)
            if request.method == "GET" and rest.startswith("files/") and rest.endswith(":download"):
                return await self._download(entry, rest.removeprefix("files/").removesuffix(":download"))
            raise GoogleError("NOT_FOUND", f"Method not found: {request.method} /v1beta/{rest}")
        except GoogleError as err:
            return err.response()

    def _authenticate(self, entry: Recorded) -> None:
        key = entry.headers.get("x-goog-api-key") or entry.query.get("key")
        if not key:
            raise GoogleError(
                "PERMISSION_DENIED",
                "Method doesn't allow unregistered callers (callers without established identity). "
                "Please use API Key or other form of API consumer identity to call this API.",
            )
        if key != self.api_key:
            info = {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "API_KEY_INVALID",
                "domain": "googleapis.com",
            }
            raise GoogleError("INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.", [info])

    # -- submit -------------------------------------------------------------------------------------------------

    async def _submit(self, entry: Recorded, model: str) -> Response:
        answer, injected = await self.inject("submit")
        if answer is not None:
            return answer
        rules = MODELS.get(model)
        if rules is None:
            raise GoogleError(
                "NOT_FOUND",
                f"models/{model} is not found for API version v1beta, or is not supported for predictLongRunning.",
            )
        op = self._create(model, rules, parse_json(entry.body))
        late = await self.after_work(injected)
        if late is not None:
            return late
        if injected == "drop_reply":
            return fault_error("500").response()
        return JSONResponse({"name": op.name})

    def _create(self, model: str, rules: Rules, body: dict[str, Any]) -> Operation:
        check_fields("", body, {"instances", "parameters", "webhookConfig"})
        instances = body.get("instances")
        if not isinstance(instances, list) or len(instances) != 1:
            raise GoogleError("INVALID_ARGUMENT", "instances must hold exactly one instance")
        used, prompt = check_instance(instances[0], rules, gcs=False, inline_data=True)
        params = body.get("parameters", {})
        if not isinstance(params, dict):
            raise GoogleError("INVALID_ARGUMENT", "parameters must be an object")
        for key in params:
            if key in NOT_ON_GEMINI:
                raise GoogleError("INVALID_ARGUMENT", f"`{key}` isn't supported by the Gemini API for {model}.")
        check_fields("parameters", params, PARAMETERS)
        aspect, seconds = check_common(params, rules, used)
        # T2V and extension: allow_all only; anything with an image: allow_adult only (§2.2).
        with_image = bool(used & {"image", "lastFrame", "referenceImages"})
        allowed = ("allow_adult",) if with_image else ("allow_all",)
        person = params.get("personGeneration")
        if person is not None and person not in allowed:
            kind = "image-to-video" if with_image else "text-to-video"
            raise GoogleError(
                "INVALID_ARGUMENT",
                f"personGeneration {person!r} is not supported for {kind}; supported: {', '.join(allowed)}",
            )
        samples = samples_of(params, rules)
        op_id = self.store.new_id()
        op = Operation(
            name=f"models/{model}/operations/{op_id}",
            model=model,
            body=body,
            aspect=aspect,
            seconds=seconds,
            samples=samples,
            outcome=self.store.outcome_of(prompt),
        )
        self.store.ops[op_id] = op
        return op

    # -- poll ----------------------------------------------------------------------------------------------------

    async def _operation(self, rest: str) -> Response:
        answer, injected = await self.inject("poll")
        if answer is not None:
            return answer
        model, _, op_id = rest.removeprefix("models/").partition("/operations/")
        op = self.store.ops.get(op_id)
        if op is None or op.model != model or injected == "not_found":
            raise GoogleError("NOT_FOUND", f"Operation {rest} not found.")
        if injected == "unknown_status":
            # An answer in a shape no documented Operation has: done but neither response nor error.
            return JSONResponse({"name": op.name, "done": True, "state": "WEIRD"})
        self.store.advance(op)
        if injected == "drop_reply":
            return fault_error("500").response()
        late = await self.after_work(injected)
        if late is not None:
            return late
        return JSONResponse(self.render(op))

    def render(self, op: Operation) -> dict[str, Any]:
        data: dict[str, Any] = {"name": op.name, "done": op.done}
        # Unknown-to-the-adapter fields ride along, as the live API adds metadata.
        data["metadata"] = {
            "@type": "type.googleapis.com/google.ai.generativelanguage.v1beta.Metadata",
            "createTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(op.created)),
        }
        if not op.done:
            return data
        if op.outcome == "error":
            data["error"] = {"code": 13, "message": FAIL_MESSAGE}
            return data
        response: dict[str, Any] = {}
        if op.outcome == "filtered":
            response = {"raiMediaFilteredCount": 1, "raiMediaFilteredReasons": [FILTER_REASON]}
        else:
            samples = []
            for index, video in enumerate(op.videos):
                file_id = f"{op.name.rsplit('/', 1)[-1]}-{index}"
                self.downloads.setdefault(file_id, (video, time.time() + self.file_ttl_s))
                samples.append({"video": {"uri": f"{self.base_url}/v1beta/files/{file_id}:download?alt=media"}})
            response = {"generatedSamples": samples}
        data["response"] = {
            "@type": "type.googleapis.com/google.ai.generativelanguage.v1beta.PredictLongRunningResponse",
            "generateVideoResponse": response,
        }
        return data

    # -- download -------------------------------------------------------------------------------------------------

    async def _download(self, entry: Recorded, file_id: str) -> Response:
        if entry.query.get("alt") != "media":
            raise GoogleError("INVALID_ARGUMENT", "files download needs alt=media")
        stored = self.downloads.get(file_id)
        if stored is None or stored[1] < time.time():
            raise GoogleError("NOT_FOUND", f"File {file_id} not found or expired.")
        try:
            await self.fault("download")
        except InjectedFault as exc:
            return exc.response or fault_error("500").response()
        return Response(stored[0], media_type="video/mp4")
