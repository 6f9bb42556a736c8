"""Veo on Vertex AI, emulated (reference/providers-2026.md §2.3, §2.4, §2.6), with its OAuth token endpoint.

`POST /token` takes the service account's RS256 JWT assertion (form-encoded, jwt-bearer grant), verifies it
against the public key the test registered (`register_account`, or `make_service_account` which also writes
the JSON key file whose `token_uri` points here) and answers `{access_token, expires_in, token_type}`.
API calls need `Authorization: Bearer <that token>` until it expires. `…:predictLongRunning` and
`…:fetchPredictOperation` under `/v1/projects/{p}/locations/{l}/publishers/google/models/{m}`; results are
inline `bytesBase64Encoded` (or a `gcsUri` when the request named `storageUri`; the emulator serves no GCS).
Faults: "token", "submit", "poll", and "download" (applied to the fetch that hands out the finished bytes).
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
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
    choice,
    fault_error,
    parse_json,
    samples_of,
)

SCOPE = "https://www.googleapis.com/auth/cloud-platform"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
_V31 = frozenset({"image", "lastFrame", "referenceImages", "video"})
MODELS: dict[str, Rules] = {
    "veo-2.0-generate-001": Rules(
        frozenset({"image", "lastFrame", "video"}), ("720p",), (5, 6, 7, 8), audio=False, max_samples=4
    ),
    "veo-3.0-generate-001": Rules(frozenset({"image"}), ("720p", "1080p"), (4, 6, 8), max_samples=4),
    "veo-3.0-fast-generate-001": Rules(frozenset({"image"}), ("720p", "1080p"), (4, 6, 8), max_samples=4),
    "veo-3.1-generate-001": Rules(_V31, ("720p", "1080p", "4k"), (4, 6, 8), max_samples=4),
    "veo-3.1-fast-generate-001": Rules(_V31, ("720p", "1080p", "4k"), (4, 6, 8), max_samples=4),
    "veo-3.1-lite-generate-001": Rules(frozenset({"image", "lastFrame"}), ("720p", "1080p"), (4, 6, 8), max_samples=4),
}
PARAMETERS = frozenset(
    {
        "aspectRatio",
        "durationSeconds",
        "resolution",
        "negativePrompt",
        "personGeneration",
        "sampleCount",
        "storageUri",
        "fps",
        "seed",
        "pubsubTopic",
        "enhancePrompt",
        "generateAudio",
        "compressionQuality",
        "resizeMode",
    }
)


@dataclass
class Account:
    client_email: str
    key_id: str
    public_key: Any


def make_service_account(
    fake: FakeVertex,
    path: Path,
    *,
    email: str = "vidgate@proj-test.iam.gserviceaccount.com",
    project: str = "proj-test",
) -> dict[str, Any]:
    """Generate an RSA key pair, register its public half with `fake`, write the JSON key file to `path`."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    key_id = secrets.token_hex(20)
    fake.register_account(email, key_id, key.public_key())
    info = {
        "type": "service_account",
        "project_id": project,
        "private_key_id": key_id,
        "private_key": pem,
        "client_email": email,
        "client_id": "1234567890",
        "token_uri": f"{fake.base_url}/token",
    }
    path.write_text(json.dumps(info))
    return info


class FakeVertex(FakeUpstream):
    """Vertex AI's Veo surface plus Google's OAuth token endpoint."""

    name = "vertex"

    def __init__(
        self, projects: tuple[str, ...] = ("proj-test",), polls_per_step: int = 1, token_ttl_s: int = 3599
    ) -> None:
        self.projects = projects
        self.token_ttl_s = token_ttl_s
        self.accounts: dict[str, Account] = {}
        # Operations carry fields the docs do not show (as live answers do); off to compare exact bodies.
        self.extra_fields = False
        # Projects allow-listed for personGeneration allow_all.
        self.allow_all_projects: set[str] = set()
        self.tokens: dict[str, float] = {}  # access token -> expires at
        self.assertions: list[dict[str, Any]] = []  # verified claims of every token request
        self.polls_per_step = polls_per_step
        self.store = OperationStore(polls_per_step)
        super().__init__()

    def register_account(self, email: str, key_id: str, public_key: Any) -> None:
        self.accounts[email] = Account(email, key_id, public_key)

    def reset(self) -> None:
        """Forget requests, operations and faults. Tokens handed out stay valid (a gateway holding one keeps
        using it, as against Google); `expire_tokens()` ends them."""
        self.history.clear()
        self.faults.clear()
        self.store.ops.clear()
        self.store.polls_per_step = self.polls_per_step
        self.assertions.clear()
        self.token_ttl_s = 3599

    def expire_tokens(self) -> None:
        """Every token handed out so far stops working (as after an hour)."""
        self.tokens = dict.fromkeys(self.tokens, 0.0)

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/token", self._token, methods=["POST"]),
            Route(
                "/v1/projects/{project}/locations/{location}/publishers/google/models/{action}",
                self._api,
                methods=["POST"],
            ),
        ]

    def fault_response(self, kind: Fault) -> Response:
        return fault_error(kind).response()

    # -- OAuth ----------------------------------------------------------------------------------------------------

    async def _token(self, request: Request) -> Response:
        entry = await self.record(request)
        try:
            await self.fault("token")
        except InjectedFault as exc:
            if exc.response is not None:
                return exc.response
        try:
            claims = self._verify_assertion(entry)
        except ValueError as exc:
            return JSONResponse({"error": "invalid_grant", "error_description": str(exc)}, status_code=400)
        self.assertions.append(claims)
        token = f"ya29.{secrets.token_urlsafe(24)}"
        self.tokens[token] = time.time() + self.token_ttl_s
        return JSONResponse({"access_token": token, "expires_in": self.token_ttl_s, "token_type": "Bearer"})

    def _verify_assertion(self, entry: Recorded) -> dict[str, Any]:
        if not entry.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            raise ValueError("the token request must be form-encoded")
        from urllib.parse import parse_qs

        form = {k: v[0] for k, v in parse_qs(entry.body.decode(errors="replace")).items()}
        if form.get("grant_type") != JWT_BEARER:
            raise ValueError(f"Invalid grant_type: {form.get('grant_type')!r}")
        assertion = form.get("assertion", "")
        try:
            header = jwt.get_unverified_header(assertion)
            unverified = jwt.decode(assertion, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise ValueError("Invalid JWT: the assertion is not a JWT") from None
        account = self.accounts.get(str(unverified.get("iss")))
        if account is None:
            raise ValueError("Invalid JWT Signature.")  # what Google says for an unknown or deleted key
        if header.get("alg") != "RS256" or header.get("kid") != account.key_id:
            raise ValueError("Invalid JWT Signature.")
        try:
            claims: dict[str, Any] = jwt.decode(
                assertion,
                account.public_key,
                algorithms=["RS256"],
                audience=f"{self.base_url}/token",
                options={"require": ["iss", "aud", "iat", "exp", "scope"]},
                leeway=5,
            )
        except jwt.ExpiredSignatureError:
            raise ValueError(
                "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable "
                "timeframe. Check your iat and exp values in the JWT claim."
            ) from None
        except jwt.InvalidAudienceError:
            raise ValueError("Invalid JWT: the aud claim must be the token_uri") from None
        except jwt.PyJWTError as exc:
            raise ValueError(f"Invalid JWT: {exc}") from None
        if not isinstance(claims["iat"], int) or not isinstance(claims["exp"], int):
            raise ValueError("Invalid JWT: iat and exp must be integers")
        if claims["exp"] - claims["iat"] > 3600 or claims["iat"] > time.time() + 60:
            raise ValueError(
                "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable "
                "timeframe. Check your iat and exp values in the JWT claim."
            )
        if SCOPE not in str(claims["scope"]).split():
            raise ValueError(f"Invalid scope: {claims['scope']!r}")
        return claims

    # -- API ------------------------------------------------------------------------------------------------------

    async def _api(self, request: Request) -> Response:
        entry = await self.record(request)
        params = request.path_params
        model, _, method = params["action"].partition(":")
        try:
            self._authenticate(entry)
            if params["project"] not in self.projects:
                raise GoogleError(
                    "PERMISSION_DENIED",
                    f"Permission 'aiplatform.endpoints.predict' denied on "
                    f"resource '//aiplatform.googleapis.com/projects/{params['project']}'",
                )
            if method == "predictLongRunning":
                return await self._submit(entry, params["project"], params["location"], model)
            if method == "fetchPredictOperation":
                return await self._fetch(entry, params["project"], params["location"], model)
            raise GoogleError("NOT_FOUND", f"Method not found: {method}")
        except GoogleError as err:
            return err.response()

    def _authenticate(self, entry: Recorded) -> None:
        scheme, _, token = entry.headers.get("authorization", "").partition(" ")
        expires = self.tokens.get(token) if scheme == "Bearer" else None
        if expires is None or expires < time.time():
            raise GoogleError(
                "UNAUTHENTICATED",
                "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or "
                "other valid authentication credential.",
            )

    async def _submit(self, entry: Recorded, project: str, location: str, model: str) -> Response:
        answer, injected = await self.inject("submit")
        if answer is not None:
            return answer
        rules = MODELS.get(model)
        if rules is None:
            raise GoogleError(
                "NOT_FOUND",
                f"Publisher Model `projects/{project}/locations/{location}/publishers/"
                f"google/models/{model}` not found.",
            )
        op = self._create(project, location, model, rules, parse_json(entry.body))
        late = await self.after_work(injected)
        if late is not None:
            return late
        if injected == "drop_reply":
            return fault_error("500").response()
        return JSONResponse({"name": op.name})

    def _create(self, project: str, location: str, model: str, rules: Rules, body: dict[str, Any]) -> Operation:
        check_fields("", body, {"instances", "parameters", "labels"})
        instances = body.get("instances")
        if not isinstance(instances, list) or len(instances) != 1:
            raise GoogleError("INVALID_ARGUMENT", "instances must hold exactly one instance")
        used, prompt = check_instance(instances[0], rules, gcs=True, inline_data=False, extra=frozenset({"mask"}))
        params = body.get("parameters", {})
        if not isinstance(params, dict):
            raise GoogleError("INVALID_ARGUMENT", "parameters must be an object")
        check_fields("parameters", params, PARAMETERS)
        aspect, seconds = check_common(params, rules, used)
        person = choice(params, "personGeneration", "allow_adult", ("dont_allow", "allow_adult", "allow_all"))
        if person == "allow_all" and project not in self.allow_all_projects:
            # §2.3: allow_all is for allow-listed projects only.
            raise GoogleError(
                "INVALID_ARGUMENT",
                f"personGeneration allow_all is not allowed for project {project}; it needs allow-listing.",
            )
        seed = params.get("seed")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32):
            raise GoogleError("INVALID_ARGUMENT", "seed must be an integer from 0 to 4294967295")
        for name in ("generateAudio", "enhancePrompt"):
            if name in params and not isinstance(params[name], bool):
                raise GoogleError("INVALID_ARGUMENT", f"{name} must be a boolean")
        if params.get("generateAudio") and not rules.audio:
            raise GoogleError("INVALID_ARGUMENT", f"generateAudio is not supported by {model}")
        if "compressionQuality" in params:
            choice(params, "compressionQuality", "optimized", ("optimized", "lossless"))
        if "resizeMode" in params:
            choice(params, "resizeMode", "pad", ("pad", "crop"))
            if "image" not in used:
                raise GoogleError("INVALID_ARGUMENT", "resizeMode applies to image-to-video only")
        storage = params.get("storageUri")
        if storage is not None and (not isinstance(storage, str) or not storage.startswith("gs://")):
            raise GoogleError("INVALID_ARGUMENT", "storageUri must be a gs:// URI")
        op_id = self.store.new_id()
        op = Operation(
            name=f"projects/{project}/locations/{location}/publishers/google/models/{model}/operations/{op_id}",
            model=model,
            body=body,
            aspect=aspect,
            seconds=seconds,
            samples=samples_of(params, rules),
            outcome=self.store.outcome_of(prompt),
        )
        self.store.ops[op_id] = op
        return op

    async def _fetch(self, entry: Recorded, project: str, location: str, model: str) -> Response:
        answer, injected = await self.inject("poll")
        if answer is not None:
            return answer
        body = parse_json(entry.body)
        check_fields("", body, {"operationName"})
        name = body.get("operationName")
        prefix = f"projects/{project}/locations/{location}/publishers/google/models/{model}/operations/"
        if not isinstance(name, str) or not name.startswith(prefix):
            raise GoogleError("INVALID_ARGUMENT", f"operationName must be an operation of {prefix.rsplit('/', 2)[0]}")
        op = self.store.ops.get(name.removeprefix(prefix))
        if op is None or injected == "not_found":
            raise GoogleError("NOT_FOUND", f"Operation {name} not found.")
        if injected == "unknown_status":
            return JSONResponse({"name": op.name, "done": True, "state": "WEIRD"})
        self.store.advance(op)
        if op.done and op.outcome == "ok":
            try:
                await self.fault("download")
            except InjectedFault as exc:
                return exc.response or fault_error("500").response()
        if injected == "drop_reply":
            return fault_error("500").response()
        late = await self.after_work(injected)
        if late is not None:
            return late
        return JSONResponse(self.render(op))

    def render(self, op: Operation) -> dict[str, Any]:
        data: dict[str, Any] = {"name": op.name, "done": op.done}
        if self.extra_fields:
            # Fields no documented Operation has: an adapter must read past them.
            data["metadata"] = {
                "@type": "type.googleapis.com/google.cloud.aiplatform.v1.GenericOperationMetadata",
                "partialFailures": [],
            }
        if not op.done:
            return data
        if op.outcome == "error":
            data["error"] = {"code": 13, "message": FAIL_MESSAGE}
            return data
        response: dict[str, Any] = {"@type": "type.googleapis.com/cloud.ai.large_models.vision.GenerateVideoResponse"}
        if op.outcome == "filtered":
            response.update(raiMediaFilteredCount=1, raiMediaFilteredReasons=[FILTER_REASON])
        else:
            storage = op.body.get("parameters", {}).get("storageUri")
            videos: list[dict[str, Any]] = []
            for index, video in enumerate(op.videos):
                if storage:
                    videos.append(
                        {
                            "gcsUri": f"{storage.rstrip('/')}/{op.name.rsplit('/', 1)[-1]}/sample_{index}.mp4",
                            "mimeType": "video/mp4",
                        }
                    )
                else:
                    videos.append({"bytesBase64Encoded": base64.b64encode(video).decode(), "mimeType": "video/mp4"})
            response.update(raiMediaFilteredCount=0, videos=videos)
        data["response"] = response
        return data
