"""Jimeng (即梦) on the Volcengine visual API, per providers.md §4 and §6.4.

Endpoints: `POST /?Action=CVSync2AsyncSubmitTask&Version=2022-08-31` and
`POST /?Action=CVSync2AsyncGetResult&Version=2022-08-31`, both signed with Volcengine V4 ("HMAC-SHA256").

Order of checks: Action/Version (404 100008) -> signature (401/400 ResponseMetadata envelope) -> injected
fault -> business body (`{code, data, message, request_id, status, time_elapsed}`).

Signature verification (§4.3): recomputed with the client's declared SignedHeaders, which must include
x-date; every declared header must be present; X-Content-Sha256, when sent, must equal sha256(body) (the
canonical request always uses the hash of the body actually received); scope must be
`{X-Date[:8]}/cn-north-1/cv/request`; X-Date within `max_skew_s` of now. Why a request was refused is appended
to `auth_failures` (the envelope's Message is the vendor's fixed text).

Lifecycle: each GetResult shows one state `polls_per_step` times: in_queue -> generating -> done. With
polls_per_step=1: 1st GetResult in_queue, 2nd generating, 3rd done (+ `video_url`, valid `file_ttl_s`).

Fault call names: "submit", "poll" (GetResult), "download" (the video URL, from the base class).
"unknown_status" / "not_found" change GetResult's data.status (no effect on submit); "drop_reply" does the
work (creates / advances) and then answers 500.

Choices where providers.md is uncertain (§4.7, §7.4):
  - parameter errors: HTTP 400, code 50400, message "Invalid parameter: <what>", data null.
  - business failures found at GetResult (the `FAIL` prompt -> 50413 "Post Text Risk Not Pass", or
    `fail_next`) answer with the HTTP status of the §4.7 table (400 for risk codes, 429 for 50429/50430, 500 for
    50500/50501), data null, every time the task is polled from then on.
  - req_key mismatch on GetResult -> 200, data.status "not_found".
  - signature-scope errors (wrong region / service / date) -> 401 100010 SignatureDoesNotMatch; missing X-Date
    -> 400 100004 MissingRequestInfo; an Authorization header without a Signature -> 401 100005.
  - `jimeng_i2v_first_tail_v30*` take exactly 2 images (first + last frame, §4.4); the other i2v keys exactly 1;
    `jimeng_ti2v_v30_pro` takes 0 or 1 image and needs a prompt or an image; t2v keys refuse images.
  - images in `binary_data_base64` must be JPEG/PNG, <= 4.7 MB, <= 4096 px, short side >= 320, long/short <= 3
    (the 3.0 Pro doc); `image_urls` must be http(s) and are never fetched.
  - `aspect_ratio: ""` (new-api always sends it) means the default 16:9.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import io
import re
import secrets
import time
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, quote

import orjson
from PIL import Image, UnidentifiedImageError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from tests.fakes.base import FakeUpstream, Fault, InjectedFault, Recorded, make_mp4

REGION = "cn-north-1"
SERVICE = "cv"
ALGORITHM = "HMAC-SHA256"
VERSION = "2022-08-31"
SUBMIT = "CVSync2AsyncSubmitTask"
RESULT = "CVSync2AsyncGetResult"
X_DATE_FORMAT = "%Y%m%dT%H%M%SZ"

T2V_KEYS = frozenset({"jimeng_vgfm_t2v_l20", "jimeng_t2v_v30", "jimeng_t2v_v30_1080p"})
# req_key -> how many images it takes (ti2v_v30_pro: 0 or 1, handled apart).
I2V_KEYS: dict[str, int] = {
    "jimeng_vgfm_i2v_l20": 1,
    "jimeng_i2v_first_v30": 1,
    "jimeng_i2v_first_v30_1080": 1,
    "jimeng_i2v_first_tail_v30": 2,
    "jimeng_i2v_first_tail_v30_1080": 2,
}
TI2V_KEY = "jimeng_ti2v_v30_pro"
REQ_KEYS = T2V_KEYS | set(I2V_KEYS) | {TI2V_KEY}
L20_KEYS = frozenset({"jimeng_vgfm_t2v_l20", "jimeng_vgfm_i2v_l20"})
# Output sizes per aspect ratio (3.0 Pro doc); 9:21 only exists for the S2.0 Pro (l20) keys.
ASPECTS: dict[str, tuple[int, int]] = {
    "16:9": (1920, 1088),
    "4:3": (1664, 1248),
    "1:1": (1440, 1440),
    "3:4": (1248, 1664),
    "9:16": (1088, 1920),
    "21:9": (2176, 928),
    "9:21": (928, 2176),
}
FRAMES = (121, 241)
STATES = ("in_queue", "generating", "done")
PROMPT_MAX = 800
IMAGE_MAX_BYTES = int(4.7 * 1024 * 1024)

SIGNATURE_MISMATCH = (
    "The request signature we calculated does not match the signature you provided. Check your Secret Access "
    "Key and signing method. Consult the service documentation for details."
)
AUTH_HEADER = re.compile(
    r"^(?P<algorithm>\S+) Credential=(?P<credential>[^,\s]+),\s*SignedHeaders=(?P<signed>[^,\s]+)"
    r"(?:,\s*Signature=(?P<signature>[0-9a-fA-F]+))?\s*$"
)


# -- Volcengine V4 signing, as pure functions (the verifier and tests use the same code) -----------------


def sha256_hex(data: bytes | str) -> str:
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


def canonical_query(pairs: Iterable[tuple[str, str]]) -> str:
    """Keys sorted (stable, so repeated keys keep their order), RFC 3986 encoding with "-_.~" safe."""
    ordered = sorted(pairs, key=lambda pair: pair[0])
    return "&".join(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in ordered)


def canonical_header_value(name: str, value: str) -> str:
    """Trimmed; the official SDK drops a default port from the host before signing."""
    value = value.strip()
    if name == "host" and value.endswith((":80", ":443")):
        value = value.rsplit(":", 1)[0]
    return value


def canonical_request(
    method: str,
    path: str,
    query: Iterable[tuple[str, str]],
    headers: Mapping[str, str],
    signed_headers: Sequence[str],
    body_sha256: str,
) -> str:
    """Method, URI, query, header block (each line ends in \\n), signed-header list, body hash; joined by \\n."""
    lower = {name.lower(): value for name, value in headers.items()}
    block = "".join(f"{name}:{canonical_header_value(name, lower[name])}\n" for name in signed_headers)
    return "\n".join(
        [
            method.upper(),
            quote(path or "/", safe="/"),
            canonical_query(query),
            block,
            ";".join(signed_headers),
            body_sha256,
        ]
    )


def credential_scope(short_date: str, region: str = REGION, service: str = SERVICE) -> str:
    return f"{short_date}/{region}/{service}/request"


def string_to_sign(x_date: str, scope: str, canonical: str) -> str:
    return "\n".join([ALGORITHM, x_date, scope, sha256_hex(canonical)])


def signing_key(secret_key: str, short_date: str, region: str = REGION, service: str = SERVICE) -> bytes:
    """kDate -> kRegion -> kService -> kSigning; unlike AWS there is no "AWS4" prefix on the secret."""
    key = secret_key.encode()
    for part in (short_date, region, service, "request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def signature(key: bytes, to_sign: str) -> str:
    return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()


def default_signed_headers(headers: Mapping[str, str]) -> list[str]:
    """What the official SDK signs: Content-Type, Content-Md5, Host and every X-* header present."""
    names = {name.lower() for name in headers}
    return sorted(n for n in names if n in ("content-type", "content-md5", "host") or n.startswith("x-"))


def sign(
    access_key: str,
    secret_key: str,
    *,
    headers: Mapping[str, str],
    body: bytes,
    query: Iterable[tuple[str, str]],
    method: str = "POST",
    path: str = "/",
    x_date: str | None = None,
    region: str = REGION,
    service: str = SERVICE,
    signed_headers: Sequence[str] | None = None,
) -> dict[str, str]:
    """A client-side signer: `headers` plus X-Date, X-Content-Sha256 and Authorization."""
    out = dict(headers)
    out["X-Date"] = x_date or datetime.now(UTC).strftime(X_DATE_FORMAT)
    out["X-Content-Sha256"] = sha256_hex(body)
    names = list(signed_headers) if signed_headers is not None else default_signed_headers(out)
    scope = credential_scope(out["X-Date"][:8], region, service)
    canonical = canonical_request(method, path, query, out, names, out["X-Content-Sha256"])
    sig = signature(
        signing_key(secret_key, out["X-Date"][:8], region, service), string_to_sign(out["X-Date"], scope, canonical)
    )
    credential = f"{access_key}/{scope}"
    out["Authorization"] = f"{ALGORITHM} Credential={credential}, SignedHeaders={';'.join(names)}, Signature={sig}"
    return out


# -- answers ---------------------------------------------------------------------------------------------


def request_id() -> str:
    """YYYYMMDDhhmmss + 20 upper-case hex digits, like `20240720103939AF0029465CF6A74E51EC`."""
    return datetime.now(UTC).strftime("%Y%m%d%H%M%S") + secrets.token_hex(10).upper()


def http_status_for(code: int) -> int:
    """§4.7: QPS/concurrency limits are 429, internal errors 500, risk and parameter errors 400."""
    if code in (50429, 50430):
        return 429
    if code in (50500, 50501):
        return 500
    return 400


class GatewayError(Exception):
    """A Volcengine gateway refusal, answered with the ResponseMetadata envelope."""

    def __init__(self, status: int, code_n: int, code: str, message: str, reason: str = "") -> None:
        super().__init__(reason or message)
        self.status, self.code_n, self.code, self.message, self.reason = status, code_n, code, message, reason

    def response(self, action: str, version: str) -> JSONResponse:
        body = {
            "ResponseMetadata": {
                "RequestId": request_id(),
                "Action": action,
                "Version": version,
                "Service": SERVICE,
                "Region": REGION,
                "Error": {"CodeN": self.code_n, "Code": self.code, "Message": self.message},
            }
        }
        return JSONResponse(body, status_code=self.status)


class BusinessError(Exception):
    """A business-level refusal: `{code, data: null, message, ...}` with the §4.7 HTTP status."""

    def __init__(self, code: int, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.code, self.message = code, message
        self.status = status if status is not None else http_status_for(code)


def bad_param(what: str) -> BusinessError:
    return BusinessError(50400, f"Invalid parameter: {what}")


def mismatch(reason: str) -> GatewayError:
    return GatewayError(401, 100010, "SignatureDoesNotMatch", SIGNATURE_MISMATCH, reason)


# -- business validation ---------------------------------------------------------------------------------


def nearest_aspect(width: int, height: int, allowed: Iterable[str]) -> str:
    ratio = width / height
    return min(allowed, key=lambda name: abs(ASPECTS[name][0] / ASPECTS[name][1] - ratio))


def check_base64_image(raw: Any) -> tuple[int, int]:
    """Raw base64 (no data: prefix) of a JPEG/PNG within the 3.0 Pro limits; returns (width, height)."""
    if not isinstance(raw, str):
        raise bad_param("binary_data_base64 items must be strings")
    try:
        data = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise bad_param("binary_data_base64 is not valid base64") from exc
    if len(data) > IMAGE_MAX_BYTES:
        raise bad_param("image larger than 4.7MB")
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            image_format, (width, height) = image.format, image.size
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise bad_param("binary_data_base64 is not a decodable image") from exc
    if image_format not in ("JPEG", "PNG"):
        raise bad_param(f"image format {image_format} not supported, use JPEG or PNG")
    if max(width, height) > 4096 or min(width, height) < 320 or max(width, height) / min(width, height) > 3:
        raise bad_param(f"image size {width}x{height} out of range (<=4096, short side >=320, ratio <=3)")
    return width, height


def check_images(body: Mapping[str, Any], count: int) -> tuple[str, list[tuple[int, int] | None]]:
    """Exactly one of image_urls / binary_data_base64 with `count` items; returns (source, sizes if known)."""
    urls, blobs = body.get("image_urls"), body.get("binary_data_base64")
    if urls and blobs:
        raise bad_param("image_urls and binary_data_base64 are mutually exclusive")
    items = urls or blobs
    if not isinstance(items, list) or len(items) != count:
        raise bad_param(f"expected {count} image(s) in image_urls or binary_data_base64")
    if urls:
        for url in urls:
            if not isinstance(url, str) or not url.startswith(("http://", "https://")):
                raise bad_param("image_urls must be http(s) URLs")
        return "image_urls", [None] * count
    return "binary_data_base64", [check_base64_image(raw) for raw in items]


@dataclass
class JimengTask:
    """One submitted generation."""

    task_id: str
    req_key: str
    prompt: str
    aspect_ratio: str
    frames: int
    seed: int
    image_source: str | None
    polls: int = 0
    state: int = 0
    expired: bool = False
    fail_with: tuple[int, str] | None = None
    video_url: str | None = None
    aigc_meta_tagged: bool = False

    @property
    def status(self) -> str:
        return STATES[self.state]


def parse_submit(body: Mapping[str, Any]) -> dict[str, Any]:
    """Validate a submit body and return the task's fields (without task_id)."""
    req_key = body.get("req_key")
    if req_key not in REQ_KEYS:
        raise bad_param(f"req_key {req_key!r} is not supported")
    prompt = body.get("prompt", "")
    if not isinstance(prompt, str) or len(prompt) > PROMPT_MAX:
        raise bad_param(f"prompt must be a string of at most {PROMPT_MAX} characters")
    has_images = bool(body.get("image_urls") or body.get("binary_data_base64"))
    if req_key in T2V_KEYS:
        if has_images:
            raise bad_param(f"{req_key} is text-to-video and takes no images")
        count = 0
    elif req_key == TI2V_KEY:
        count = 1 if has_images else 0
    else:
        count = I2V_KEYS[req_key]
    if count == 0 and not prompt:
        raise bad_param("prompt is required")
    source, sizes = check_images(body, count) if count else (None, [])
    frames = body.get("frames", 121)
    if isinstance(frames, bool) or not isinstance(frames, int) or frames not in FRAMES:
        raise bad_param("frames must be 121 or 241")
    seed = body.get("seed", -1)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise bad_param("seed must be an integer")
    allowed = [a for a in ASPECTS if a != "9:21" or req_key in L20_KEYS]
    aspect = body.get("aspect_ratio") or "16:9"
    if aspect not in allowed:
        raise bad_param(f"aspect_ratio must be one of {', '.join(allowed)}")
    if sizes and sizes[0] is not None:
        # Image-to-video follows the first image (nearest supported ratio, centre-cropped).
        aspect = nearest_aspect(*sizes[0], allowed)
    return {
        "req_key": req_key,
        "prompt": prompt,
        "aspect_ratio": aspect,
        "frames": frames,
        "seed": seed,
        "image_source": source,
    }


# -- the emulator ----------------------------------------------------------------------------------------


class FakeJimeng(FakeUpstream):
    """Volcengine visual API (Jimeng video) with a V4 signature verifier; see the module docstring."""

    name = "jimeng"

    def __init__(
        self,
        access_key: str = "AKLTtest",
        secret_key: str = "c2VjcmV0",
        polls_per_step: int = 1,
        max_skew_s: int = 300,
    ) -> None:
        if polls_per_step < 1:
            raise ValueError("polls_per_step must be >= 1")
        self.access_key = access_key
        self.secret_key = secret_key
        self.polls_per_step = polls_per_step
        self.max_skew_s = max_skew_s
        self.tasks: dict[str, JimengTask] = {}
        self.auth_failures: list[str] = []
        self.video_fps = 24  # `frames` is counted at 24 fps (121 = 5 s)
        self._fail_queue: deque[tuple[int, str]] = deque()
        super().__init__()

    def routes(self) -> list[BaseRoute]:
        return [Route("/", self._endpoint, methods=["POST"])]

    def fault_response(self, kind: Fault) -> Response:
        if kind == "429":
            error = BusinessError(50429, "Request Has Reached API Limit, Please Try Later")
        else:
            error = BusinessError(50500, "Internal Error", int(kind) if kind.isdigit() else 500)
        return self._business_error(error, time.perf_counter())

    # -- knobs for tests ------------------------------------------------------------------------------

    def fail_next(self, code: int, message: str) -> None:
        """The next submitted task fails when it reaches `done`, answering `code`/`message`."""
        self._fail_queue.append((code, message))

    def expire(self, task_id: str) -> None:
        """From now on GetResult answers data.status "expired" for this task."""
        self.tasks[task_id].expired = True

    # -- plumbing -------------------------------------------------------------------------------------

    async def _endpoint(self, request: Request) -> Response:
        started = time.perf_counter()
        entry = await self.record(request)
        action, version = entry.query.get("Action", ""), entry.query.get("Version", "")
        try:
            if action not in (SUBMIT, RESULT) or version != VERSION:
                raise GatewayError(
                    404,
                    100008,
                    "InvalidActionOrVersion",
                    f"Could not find operation {action} for version {version}",
                    "unknown action",
                )
            self.verify(entry, [(k, v) for k, v in parse_qsl(request.url.query, keep_blank_values=True)])
        except GatewayError as exc:
            self.auth_failures.append(exc.reason)
            return exc.response(action, version)
        try:
            await self.fault("submit" if action == SUBMIT else "poll")
            kind: Fault | None = None
        except InjectedFault as exc:
            if exc.response is not None:
                return exc.response
            kind = exc.kind
        try:
            body = self._json_body(entry)
            if action == SUBMIT:
                return await self._submit(body, kind, started)
            return await self._result(body, kind, started)
        except BusinessError as exc:
            return self._business_error(exc, started)

    def verify(self, entry: Recorded, query: Sequence[tuple[str, str]]) -> None:
        """Volcengine V4 check of one recorded request; raises GatewayError (see module docstring)."""
        header = entry.headers.get("authorization")
        if not header:
            raise GatewayError(
                401,
                100003,
                "MissingAuthenticationToken",
                "The request is missing an Authorization header.",
                "no Authorization",
            )
        match = AUTH_HEADER.match(header)
        if match is None:
            raise mismatch("malformed Authorization")
        if match["signature"] is None:
            raise GatewayError(401, 100005, "MissingSignature", "The request signature is missing.", "no Signature")
        if match["algorithm"] != ALGORITHM:
            raise mismatch(f"algorithm {match['algorithm']}")
        parts = match["credential"].split("/")
        if len(parts) != 5 or parts[4] != "request":
            raise mismatch("malformed Credential")
        access_key, scope_date, region, service, _ = parts
        x_date = entry.headers.get("x-date")
        if not x_date:
            raise GatewayError(400, 100004, "MissingRequestInfo", "The request is missing X-Date.", "no X-Date")
        try:
            signed_at = datetime.strptime(x_date, X_DATE_FORMAT).replace(tzinfo=UTC)
        except ValueError as exc:
            raise GatewayError(
                400, 100006, "InvalidTimestamp", "signature of the request is expired", f"bad X-Date {x_date}"
            ) from exc
        if abs(time.time() - signed_at.timestamp()) > self.max_skew_s:
            raise GatewayError(
                400,
                100006,
                "InvalidTimestamp",
                "signature of the request is expired",
                f"X-Date {x_date} outside ±{self.max_skew_s}s",
            )
        if access_key != self.access_key:
            raise GatewayError(
                401,
                100009,
                "InvalidAccessKey",
                "The Access Key ID provided does not exist in our records.",
                f"unknown AK {access_key}",
            )
        if (region, service) != (REGION, SERVICE):
            raise mismatch(f"scope {region}/{service}")
        if scope_date != x_date[:8]:
            raise mismatch(f"scope date {scope_date} != X-Date {x_date[:8]}")
        signed = match["signed"].lower().split(";")
        if "x-date" not in signed:
            raise mismatch("x-date not signed")
        missing = [name for name in signed if name not in entry.headers]
        if missing:
            raise mismatch(f"signed headers not sent: {missing}")
        body_hash = sha256_hex(entry.body)
        if "x-content-sha256" in entry.headers and entry.headers["x-content-sha256"] != body_hash:
            raise mismatch("X-Content-Sha256 differs from the body")
        canonical = canonical_request(entry.method, entry.path, query, entry.headers, signed, body_hash)
        expected = signature(
            signing_key(self.secret_key, scope_date), string_to_sign(x_date, credential_scope(scope_date), canonical)
        )
        if not hmac.compare_digest(expected, match["signature"].lower()):
            raise mismatch("signature differs")

    @staticmethod
    def _json_body(entry: Recorded) -> dict[str, Any]:
        try:
            body = orjson.loads(entry.body)
        except orjson.JSONDecodeError as exc:
            raise bad_param("body is not valid JSON") from exc
        if not isinstance(body, dict):
            raise bad_param("body must be a JSON object")
        return body

    @staticmethod
    def _answer(code: int, data: Any, message: str, started: float, status: int = 200) -> JSONResponse:
        elapsed = f"{(time.perf_counter() - started) * 1000:.6f}ms"
        body = {
            "code": code,
            "data": data,
            "message": message,
            "request_id": request_id(),
            "status": code,
            "time_elapsed": elapsed,
        }
        return JSONResponse(body, status_code=status)

    def _business_error(self, error: BusinessError, started: float) -> JSONResponse:
        return self._answer(error.code, None, error.message, started, error.status)

    # -- business -------------------------------------------------------------------------------------

    async def _submit(self, body: dict[str, Any], kind: Fault | None, started: float) -> Response:
        fields = parse_submit(body)
        task_id = str(secrets.randbelow(9 * 10**18) + 10**18)  # 19 digits
        fail_with = self._fail_queue.popleft() if self._fail_queue else None
        if fail_with is None and "FAIL" in fields["prompt"]:
            fail_with = (50413, "Post Text Risk Not Pass")
        self.tasks[task_id] = JimengTask(task_id=task_id, fail_with=fail_with, **fields)
        if kind == "drop_reply":
            raise BusinessError(50500, "Internal Error")
        return self._answer(10000, {"task_id": task_id}, "Success", started)

    async def _result(self, body: dict[str, Any], kind: Fault | None, started: float) -> Response:
        task_id, req_key = body.get("task_id"), body.get("req_key")
        if not isinstance(task_id, str) or not task_id:
            raise bad_param("task_id is required")
        if not isinstance(req_key, str) or not req_key:
            raise bad_param("req_key is required")
        tagged = self._aigc_meta(body.get("req_json"))
        task = self.tasks.get(task_id)
        if task is None or task.req_key != req_key or kind == "not_found":
            return self._status_answer("not_found", "", started)
        if task.expired:
            return self._status_answer("expired", "", started)
        # Each state is shown polls_per_step times: the state is decided before this poll is counted.
        target = min(task.polls // self.polls_per_step, len(STATES) - 1)
        task.polls += 1
        if target > task.state:
            task.state = target
            if task.status == "done" and task.fail_with is None:
                task.video_url = self.publish(await run_in_threadpool(self._render, task))
                task.aigc_meta_tagged = tagged
        if kind == "drop_reply":
            raise BusinessError(50500, "Internal Error")
        if task.status == "done" and task.fail_with is not None:
            raise BusinessError(*task.fail_with)
        status = "paused_x" if kind == "unknown_status" else task.status
        data: dict[str, Any] = {"status": status, "video_url": task.video_url or ""}
        if task.status == "done":
            data["aigc_meta_tagged"] = task.aigc_meta_tagged
        return self._answer(10000, data, "Success", started)

    def _status_answer(self, status: str, url: str, started: float) -> JSONResponse:
        return self._answer(10000, {"status": status, "video_url": url}, "Success", started)

    @staticmethod
    def _aigc_meta(req_json: Any) -> bool:
        """`req_json` is an optional JSON *string*; aigc_meta inside it turns on the implicit watermark."""
        if req_json is None or req_json == "":
            return False
        if not isinstance(req_json, str):
            raise bad_param("req_json must be a JSON string")
        try:
            parsed = orjson.loads(req_json)
        except orjson.JSONDecodeError as exc:
            raise bad_param("req_json is not valid JSON") from exc
        return isinstance(parsed, dict) and "aigc_meta" in parsed

    def _render(self, task: JimengTask) -> bytes:
        width, height = (max(2, round(side / 8 / 2) * 2) for side in ASPECTS[task.aspect_ratio])
        # make_mp4 writes int(seconds * fps) frames; the half frame keeps float rounding from losing one.
        seconds = (task.frames + 0.5) / self.video_fps
        return make_mp4(width, height, seconds=seconds, fps=self.video_fps, seed=int(task.task_id) % 1000)
