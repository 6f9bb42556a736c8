"""Upstream callbacks (SPEC §4): the URL vidgate hands an upstream, and how a call to it is judged.

A callback is a wake-up only. Its URL is `{public_url}/callbacks/{provider}/{task_id}?sig=…`, where `sig` is
HMAC-SHA256 over "provider/task_id" under a key derived from `secret` for this one purpose; the body is never
trusted or parsed for state: a valid call makes the poller read the task from the upstream at once. A forged
signature, another task's id or a replay change nothing, and every call gets the same answer.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from urllib.parse import quote

from vidgate.crypto import derive_key

# The most a callback body may be: vendors send the task object (a few KiB); anything longer is cut off unread.
MAX_BODY_BYTES = 64 * 1024
# What every callback is answered, whatever it was (a provider's challenge answer aside, see Provider.callback_answer).
ANSWER: dict[str, object] = {"ok": True}
_INFO = b"vidgate/callbacks/v1"
_SIG = re.compile(r"[0-9a-f]{64}")


class CallbackSigner:
    """Signs and checks callback URLs with a key derived from `secret`."""

    def __init__(self, secret: str) -> None:
        self._key = derive_key(secret, _INFO)

    def sign(self, provider: str, task_id: str) -> str:
        return hmac.new(self._key, f"{provider}/{task_id}".encode(), hashlib.sha256).hexdigest()

    def verify(self, provider: str, task_id: str, sig: str) -> bool:
        """True when `sig` is ours for this provider and task (any text in, never an exception)."""
        if not _SIG.fullmatch(sig):
            return False
        return hmac.compare_digest(self.sign(provider, task_id), sig)

    def url(self, public_url: str, provider: str, task_id: str) -> str:
        """The callback URL an upstream is given for one task."""
        path = f"/callbacks/{quote(provider, safe='')}/{quote(task_id, safe='')}"
        return f"{public_url.rstrip('/')}{path}?sig={self.sign(provider, task_id)}"
