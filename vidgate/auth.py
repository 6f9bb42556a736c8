"""Key generation and hashing, and the lookup that authenticates a request.

Keys are 256-bit random strings, so one SHA-256 is the right hash (a password hash such as bcrypt would
cost ~100 ms a request and buy nothing); lookups go by hash, and the final comparison is constant-time.

Revocation reaches every process through the database: each KeyRing watches the revocation mark of
api_keys (a count and a latest time, read through an index) every REVOCATION_CHECK_S and evicts the
revoked keys it holds. Keys that fail to authenticate are never cached, so only valid keys are ever
remembered, and a revoke is refused everywhere within about REVOCATION_CHECK_S. With `redis_url` set, a
revoke is also published (shared_state), and every process evicts the key as the message arrives.

Requests-per-minute windows live in shared_state: per process, or across all replicas through Redis.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import logging
import secrets
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from vidgate.errors import RateLimited, Unauthenticated
from vidgate.shared_state import REVOCATIONS, Shared
from vidgate.store import keys as key_store
from vidgate.store.keys import KeyRecord

log = logging.getLogger("vidgate.auth")

KEY_PREFIX = "sk-vg-"
# How long a looked-up valid key is trusted before the store is asked again (its quota, models, rpm may change).
# Revocation does not wait for this: the watcher evicts a revoked key within REVOCATION_CHECK_S.
CACHE_TTL_S = 5.0
# How often each process looks for revocations (SPEC §5: a revoked key is refused by every replica within 1 s).
REVOCATION_CHECK_S = 0.5
_CACHE_MAX = 10_000


def new_key() -> str:
    """A fresh API key: sk-vg- and 43 URL-safe characters (256 bits)."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def new_key_id() -> str:
    return "key_" + secrets.token_hex(8)


def new_webhook_secret() -> str:
    """A Standard Webhooks signing secret: whsec_ and 24 random bytes in base64."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def display_prefix(key: str) -> str:
    return key[: len(KEY_PREFIX) + 4] + "…"


@dataclass
class _Cached:
    record: KeyRecord | None
    key_hash: str
    until: float


class KeyRing:
    """Authenticates bearer keys against the store, with a short cache, and enforces requests/minute."""

    def __init__(
        self, engine: AsyncEngine, *, revocation_check_s: float = REVOCATION_CHECK_S, shared: Shared | None = None
    ) -> None:
        self._engine = engine
        self._cache: dict[str, _Cached] = {}
        # In-flight lookups by key hash, with the generation they began in.
        self._pending: dict[str, tuple[int, asyncio.Future[_Cached]]] = {}
        self._shared = shared if shared is not None else Shared()
        self._origin = f"keys-{secrets.token_hex(6)}"
        self._revocation_check_s = revocation_check_s
        self._mark: tuple[int, float | None] | None = None
        # Bumped whenever revocations were seen: a lookup that began before then does not fill the cache.
        self._generation = 0
        self._stop = asyncio.Event()
        self._watcher: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Read the revocation mark, then watch it in the background (call once the event loop runs)."""
        self._shared.subscribe(REVOCATIONS, self._origin, self._revoked)
        await self.check_revocations()
        self._stop.clear()
        self._watcher = asyncio.create_task(self._watch(), name="vidgate-revocations")

    async def stop(self) -> None:
        self._stop.set()
        if self._watcher is not None:
            await self._watcher
            self._watcher = None

    async def _watch(self) -> None:
        failing = False
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=self._revocation_check_s)
            if self._stop.is_set():
                return
            try:
                await self.check_revocations()
                failing = False
            except Exception:
                if not failing:
                    log.exception("watching for key revocations failed; retrying")
                failing = True
                # Without a view of revocations, trust nothing cached.
                self.forget()

    async def check_revocations(self) -> None:
        """Evict the cached keys revoked since the last look (by any process)."""
        mark = await key_store.revocation_mark(self._engine)
        if mark == self._mark:
            return
        self._mark = mark
        self._generation += 1
        held = {entry.record.id for entry in self._cache.values() if entry.record is not None}
        if not held:
            return
        revoked = await key_store.revoked_among(self._engine, key_ids=held)
        if revoked:
            for digest, entry in list(self._cache.items()):
                if entry.record is not None and entry.record.id in revoked:
                    del self._cache[digest]

    async def create(
        self,
        *,
        name: str,
        models: list[str] | None = None,
        rpm: int | None = None,
        quota_micros: int | None = None,
        webhook_url: str | None = None,
        webhook_secret: str | None = None,
    ) -> tuple[str, KeyRecord]:
        """Create a key; the plaintext is returned once and never stored."""
        key = new_key()
        record = await key_store.insert_key(
            self._engine,
            key_id=new_key_id(),
            name=name,
            key_hash=hash_key(key),
            key_prefix=display_prefix(key),
            models=models,
            rpm=rpm,
            quota_micros=quota_micros,
            webhook_url=webhook_url,
            webhook_secret=webhook_secret,
        )
        return key, record

    async def authenticate(self, authorization: str | None) -> KeyRecord:
        """The key behind an `Authorization: Bearer` header; Unauthenticated otherwise."""
        key = _bearer(authorization)
        digest = hash_key(key)
        now = time.monotonic()
        cached = self._cache.get(digest)
        if cached is None or cached.until < now:
            cached = await self._lookup(digest)
        # The dict lookup already matched; compare again in constant time so timing says nothing.
        if cached.record is None or not hmac.compare_digest(cached.key_hash, digest) or not cached.record.active:
            raise Unauthenticated("Incorrect API key provided.", code="invalid_api_key")
        return cached.record

    async def _lookup(self, digest: str) -> _Cached:
        # One store lookup per key at a time: when a popular key's entry expires, the requests that
        # arrive meanwhile wait for that lookup instead of each querying the store. A lookup that began
        # before a revocation was seen is not joined: it may have read the row just before the revoke.
        entry = self._pending.get(digest)
        if entry is None or entry[0] != self._generation:
            pending = asyncio.ensure_future(self._fetch(digest))
            entry = self._pending[digest] = (self._generation, pending)
            pending.add_done_callback(lambda done: self._forget_pending(digest, done))
        return await asyncio.shield(entry[1])

    def _forget_pending(self, digest: str, done: asyncio.Future[_Cached]) -> None:
        entry = self._pending.get(digest)
        if entry is not None and entry[1] is done:
            del self._pending[digest]

    async def _fetch(self, digest: str) -> _Cached:
        generation = self._generation
        record = await key_store.find_by_hash(self._engine, key_hash=digest)
        found = _Cached(record, digest, time.monotonic() + CACHE_TTL_S)
        # Only valid keys are remembered (a refused key is asked about again, so nothing refused lingers), and
        # only if no revocation was seen while this lookup ran (it may have read the row just before).
        if record is not None and record.active and generation == self._generation:
            if len(self._cache) >= _CACHE_MAX:
                self._cache.clear()
            self._cache[digest] = found
        return found

    def _revoked(self, message: dict[str, Any]) -> None:
        """Another process revoked a key: drop it now (the database watch would, within REVOCATION_CHECK_S)."""
        key_id = message.get("key_id")
        if not isinstance(key_id, str):
            return
        self._generation += 1  # a lookup running now may have read the row just before the revoke
        for digest, entry in list(self._cache.items()):
            if entry.record is not None and entry.record.id == key_id:
                del self._cache[digest]

    async def announce_revocation(self, key_id: str) -> None:
        """Tell every process (through Redis, when set) that `key_id` was revoked, and forget it here."""
        self._revoked({"key_id": key_id})
        await self._shared.publish(REVOCATIONS, self._origin, {"key_id": key_id})

    def forget(self) -> None:
        """Drop cached lookups (after a revoke in this process)."""
        self._generation += 1
        self._cache.clear()

    async def check_rate(self, record: KeyRecord) -> None:
        """Enforce the key's requests-per-minute limit over a sliding 60 s window (across replicas with Redis)."""
        if not record.rpm:
            return
        wait = await self._shared.hit(record.id, record.rpm)
        if wait is not None:
            raise RateLimited(
                f"Rate limit reached: {record.rpm} requests per minute for this key.",
                retry_after=max(1, int(wait) + 1),
                code="rate_limit_exceeded",
            )


def _bearer(authorization: str | None) -> str:
    if not authorization:
        raise Unauthenticated(
            "You didn't provide an API key. Send it as 'Authorization: Bearer sk-vg-…'.", code="missing_api_key"
        )
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthenticated("Authorization must be 'Bearer <key>'.", code="invalid_api_key")
    return token


def bearer_matches(authorization: str | None, token: str) -> bool:
    """Whether `Authorization: Bearer <token>` carries exactly `token`, compared in constant time."""
    scheme, _, given = (authorization or "").partition(" ")
    # Digests have one length, so the comparison time says nothing about the token's length either.
    given_digest = hashlib.sha256(given.strip().encode()).digest()
    return scheme.lower() == "bearer" and hmac.compare_digest(given_digest, hashlib.sha256(token.encode()).digest())
