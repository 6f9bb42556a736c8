"""Provider.find: looking up the upstream task a create made when its answer was lost, against the emulators
(Sora's `GET /v1/videos`, DashScope's `GET /api/v1/tasks`, Kling's external_task_id)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from tests.fakes.dashscope import FakeDashScope
from tests.fakes.kling import FakeKling
from tests.fakes.sora import FakeSora
from vidgate.errors import NotSupported, UpstreamTransient
from vidgate.providers.base import Credentials, VideoRequest
from vidgate.providers.dashscope import DashScopeProvider
from vidgate.providers.jimeng import JimengProvider
from vidgate.providers.kling import KlingProvider
from vidgate.providers.openai import OpenAIProvider
from vidgate.providers.vidu import ViduProvider


def request(model: str, prompt: str, *, seconds: int, size: tuple[int, int], tier: str) -> VideoRequest:
    return VideoRequest(
        model=model, prompt=prompt, seconds=seconds, width=size[0], height=size[1], tier=tier, mode="t2v"
    )


def sora(prompt: str, **changes: Any) -> VideoRequest:
    return request(changes.pop("model", "sora-2"), prompt, seconds=8, size=(1280, 720), tier="720P")


def wan(prompt: str, model: str = "wan2.5-t2v-preview") -> VideoRequest:
    return request(model, prompt, seconds=5, size=(1280, 720), tier="720P")


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as client:
        yield client


@pytest.fixture(scope="module")
def sora_fake() -> Iterator[FakeSora]:
    fake = FakeSora()
    with fake.running():
        yield fake


@pytest.fixture(scope="module")
def wan_fake() -> Iterator[FakeDashScope]:
    fake = FakeDashScope()
    with fake.running():
        yield fake


async def test_sora_finds_the_video_a_cut_create_made(sora_fake: FakeSora, http: httpx.AsyncClient) -> None:
    provider = OpenAIProvider(http)
    creds = Credentials(channel="sora", base_url=sora_fake.base_url, api_key="sk-openai-test")
    since = time.time()
    sora_fake.faults.queue("submit", "cut")
    with pytest.raises(UpstreamTransient) as info:
        await provider.submit(sora("a lighthouse in a storm"), creds, task_id="video_ours")
    assert not info.value.nothing_created  # the connection dropped after sending: the outcome is unknown
    (ours,) = [task.id for task in sora_fake.tasks.values() if task.prompt == "a lighthouse in a storm"]
    # Later videos, some nearly alike, push ours onto the second page of the list.
    for n in range(110):
        sora_fake._new_task(model="sora-2", prompt=f"another scene {n}", size="1280x720", seconds="8")
    sora_fake._new_task(model="sora-2", prompt="a lighthouse in a storm", size="720x1280", seconds="8")
    sora_fake._new_task(model="sora-2-pro", prompt="a lighthouse in a storm", size="1280x720", seconds="8")
    sora_fake._new_task(model="sora-2", prompt="a lighthouse in a storm", size="1280x720", seconds="4")
    sora_fake.history.clear()
    assert await provider.find(sora("a lighthouse in a storm"), creds, task_id="video_ours", since=since) == [ours]
    pages = [r.query for r in sora_fake.calls("/v1/videos", "GET") if r.path == "/v1/videos"]
    assert len(pages) == 2 and pages[1]["after"] and pages[0]["order"] == "desc"
    # Nothing for a request never sent, or for one sent after the video was made.
    assert await provider.find(sora("a calm sea"), creds, task_id="video_x", since=since) == []
    assert await provider.find(sora("a lighthouse in a storm"), creds, task_id="video_y", since=time.time() + 60) == []
    # A remix only matches videos remixed from that source.
    assert await provider.find(sora("a lighthouse in a storm"), creds, task_id="v", since=since, remix_of=ours) == []


async def test_sora_without_a_list_route_cannot_look() -> None:
    async with httpx.AsyncClient(transport=httpx.MockTransport(lambda req: httpx.Response(404))) as client:
        provider = OpenAIProvider(client)
        with pytest.raises(NotSupported):
            await provider.find(sora("x"), Credentials(channel="c"), task_id="video_x", since=time.time())
    failing = httpx.MockTransport(lambda req: httpx.Response(502, text="<html>bad gateway</html>"))
    async with httpx.AsyncClient(transport=failing) as client:
        with pytest.raises(UpstreamTransient):
            await OpenAIProvider(client).find(sora("x"), Credentials(channel="c"), task_id="video_x", since=0)


async def test_dashscope_finds_the_task_a_lost_submit_made(wan_fake: FakeDashScope, http: httpx.AsyncClient) -> None:
    provider = DashScopeProvider(http)
    creds = Credentials(channel="wan", base_url=wan_fake.base_url, api_key="sk-ds-test")
    since = time.time()
    wan_fake.faults.queue("submit", "cut")
    with pytest.raises(UpstreamTransient):
        await provider.submit(wan("a night market"), creds, task_id="video_ours")
    (ours,) = [task.task_id for task in wan_fake.tasks.values() if task.prompt == "a night market"]
    for n in range(105):
        await provider.submit(wan(f"a street, take {n}"), creds, task_id=f"video_{n}")
    await provider.submit(wan("a night market", model="wanx2.1-t2v-turbo"), creds, task_id="video_other_model")
    wan_fake.history.clear()
    assert await provider.find(wan("a night market"), creds, task_id="video_ours", since=since) == [ours]
    lists = [r.query for r in wan_fake.calls("/api/v1/tasks", "GET") if r.path == "/api/v1/tasks"]
    assert [q["page_no"] for q in lists] == ["1", "2"]
    assert {q["model_name"] for q in lists} == {"wan2.5-t2v-preview"}
    assert all(q["start_time"] <= q["end_time"] and len(q["start_time"]) == 14 for q in lists)
    assert await provider.find(wan("a quiet harbour"), creds, task_id="video_x", since=since) == []
    assert await provider.find(wan("a night market"), creds, task_id="video_y", since=time.time() + 120) == []
    # Another account's tasks are not ours to find.
    wan_fake.api_keys.add("sk-ds-other")
    other = Credentials(channel="wan-2", base_url=wan_fake.base_url, api_key="sk-ds-other")
    assert await provider.find(wan("a night market"), other, task_id="video_ours", since=since) == []


async def test_kling_finds_by_our_external_task_id(http: httpx.AsyncClient) -> None:
    fake = FakeKling()
    with fake.running():
        provider = KlingProvider(http)
        creds = Credentials(channel="kling", base_url=fake.base_url, access_key="ak-test", secret_key="sk-test")
        req = request("kling-v1", "a fox in snow", seconds=5, size=(1280, 720), tier="720P")
        assert await provider.find(req, creds, task_id="video_ours", since=0) == []
        submitted = await provider.submit(req, creds, task_id="video_ours")
        assert await provider.find(req, creds, task_id="video_ours", since=0) == [submitted.upstream_id]


@pytest.mark.parametrize("provider_type", [JimengProvider, ViduProvider])
async def test_upstreams_without_a_list_cannot_look(provider_type: Any, http: httpx.AsyncClient) -> None:
    provider = provider_type(http)
    with pytest.raises(NotSupported):
        await provider.find(wan("x"), Credentials(channel="c"), task_id="video_x", since=0)
