"""The conformance suite every provider passes: one `case_<provider>.py` per provider defines `CASE`.

test_providers.py runs, per case and against one vidgate per case (module-scoped), with the real `openai` and
`dashscope` SDKs: t2v and i2v (a multipart file) complete and the MP4 is stored and served, with the vendor
body and auth checked by the case's `check_submit`; random poll faults never fail a task; a content-policy
refusal and a bad parameter reach the client with the vendor's code and message; a submit whose reply is cut
is reconciled into one upstream task (when the provider lists, or looks tasks up by our id); and one task
goes through the DashScope surface, whose validation errors name DashScope's fields.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from openai import OpenAI
from openai.types import Video

from tests.fakes.base import FakeUpstream, Fault, Recorded
from tests.helpers import Server, running_gateway

HERE = Path(__file__).parent
# What a 30% poll-fault run draws from: every kind an emulator answers a poll with by itself.
POLL_FAULTS: tuple[Fault, ...] = ("429", "500", "502", "503", "garbage", "empty", "unknown_status")


@dataclass(frozen=True)
class ProviderCase:
    """One provider's emulator, channel and the expectations the shared checks need."""

    provider: str  # registered name, e.g. "ark"
    make_fake: Callable[[], FakeUpstream]  # the emulator (tests/fakes/<provider>.py), not yet started
    channel_toml: Callable[[FakeUpstream, Path], str]  # the [[channels]] block (base_url = fake.base_url)
    t2v_model: str
    i2v_model: str  # takes a first-frame image (sent as a multipart file by the openai SDK)
    dashscope_model: str  # a model used through the DashScope surface with the dashscope SDK
    policy_prompt: str  # a prompt the emulator refuses as a content-policy failure
    policy_code: str  # the vendor's code (or words) that must reach the client
    bad_metadata: dict[str, Any]  # metadata the gateway passes but the emulator rejects as a bad parameter
    bad_code: str  # the vendor's code (or words) for that
    lists: bool  # a lost submit reply is reconciled by listing (one upstream task)
    check_submit: Callable[[Recorded, str], None]  # asserts the recorded vendor body and auth; str = mode
    submit_path: str  # substring identifying the submit call in fake.calls()
    # -- optional ----------------------------------------------------------------------------------------
    # Reconciled without listing, by the id vidgate chose (Kling's external_task_id): the lost-reply check runs.
    finds_by_id: bool = False
    # Extra top-level config keys, and tables written after the channels (e.g. a [prices] table for models
    # whose price the module leaves to operators).
    settings_toml: str = ""
    tables_toml: str = ""
    # Extra create arguments per mode (size, seconds...) and the first-frame image the SDK uploads.
    t2v_args: dict[str, Any] = field(default_factory=dict)
    i2v_args: dict[str, Any] = field(default_factory=dict)
    image_size: tuple[int, int] = (640, 360)
    # When the emulator's bad-parameter refusal is not about metadata: the create arguments that provoke it.
    bad_args: dict[str, Any] | None = None
    # DashScope-surface call: extra SDK kwargs (size, duration, parameters the model takes).
    dashscope_args: dict[str, Any] = field(default_factory=dict)
    poll_faults: tuple[Fault, ...] = POLL_FAULTS
    # How long one task may take through the gateway with the emulator's pace.
    timeout_s: float = 60.0


def load_cases() -> list[ProviderCase]:
    """Every `CASE` in tests/conformance/case_*.py, by file name."""
    cases = []
    for path in sorted(HERE.glob("case_*.py")):
        module = importlib.import_module(f"tests.conformance.{path.stem}")
        case = getattr(module, "CASE", None)
        if not isinstance(case, ProviderCase):
            raise TypeError(f"{path.name} defines no CASE = ProviderCase(...)")
        cases.append(case)
    return cases


@dataclass
class Rig:
    """A case's emulator and the vidgate serving it."""

    case: ProviderCase
    fake: FakeUpstream
    server: Server

    def client(self) -> OpenAI:
        return OpenAI(base_url=f"{self.server.url}/v1", api_key=self.server.key("conformance"), max_retries=0)

    def reset(self) -> None:
        """Clear the emulator between checks (its own reset() when it has one)."""
        reset = getattr(self.fake, "reset", None)
        if callable(reset):
            reset()
        else:
            self.fake.history.clear()
            self.fake.faults.clear()

    def submits(self) -> list[Recorded]:
        return [entry for entry in self.fake.calls(self.case.submit_path) if entry.method == "POST"]


@contextmanager
def rig(case: ProviderCase, folder: Path) -> Iterator[Rig]:
    fake = case.make_fake()
    with fake.running():
        channel = case.channel_toml(fake, folder)
        settings = "poll_interval_s = 0.1\nsubmit_timeout_s = 20\n" + case.settings_toml
        with running_gateway(folder, channel, "\n" + case.tables_toml, settings=settings) as server:
            yield Rig(case=case, fake=fake, server=server)


def finish(client: OpenAI, video_id: str, timeout: float) -> Video:
    """Poll until the video is finished; fail the test past `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        video = client.videos.retrieve(video_id)
        if video.status not in ("queued", "in_progress"):
            return video
        assert time.monotonic() < deadline, video
        time.sleep(0.1)
