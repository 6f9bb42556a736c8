"""A provider from another package, registered through the `vidgate.providers` entry-point group, serves a
request end to end; and prices: a model without one stops startup, an explicit 0 does not."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from PIL import Image

from tests.helpers import Server, assert_mp4, cli, free_port, running_gateway, wait_video, write_config

PLUGIN_PATH = str(Path(__file__).parent / "plugin_pkg")
# The plugin's folder (its package and its dist-info) ahead of whatever the run already has.
PLUGIN_ENV = {"PYTHONPATH": os.pathsep.join(p for p in (PLUGIN_PATH, os.environ.get("PYTHONPATH", "")) if p)}
DEMO_CHANNEL = """
[[channels]]
name = "demo-studio"
provider = "demo"
studio = "north"
"""


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_gateway(
        tmp_path_factory.mktemp("plugin"), DEMO_CHANNEL, settings="poll_interval_s = 0.1\n", env=PLUGIN_ENV
    ) as server:
        yield server


def test_a_plugin_provider_serves_a_request_end_to_end(gw: Server) -> None:
    with openai.OpenAI(base_url=f"{gw.url}/v1", api_key=gw.key(), max_retries=0) as client:
        listed = {model.id: model.model_dump() for model in client.models.list()}
        demo = listed["demo-video"]
        assert demo["owned_by"] == "demo" and demo["price"] == "0.01" and demo["seconds"] == ["1", "2"]
        assert demo["params"]["hue"] == {
            "type": "int",
            "allowed": "an integer from 0 to 359",
            "min": 0,
            "max": 359,
            "description": "Colour of the video, in degrees.",
        }
        video = client.videos.create(
            model="demo-video",
            prompt="a green field",
            seconds="2",
            size="128x64",
            extra_body={"metadata": {"hue": 120}},
        )
        done = wait_video(client, video.id)
        assert (done.status, done.model, done.seconds, done.size) == ("completed", "demo-video", "2", "128x64"), done
        content = client.videos.download_content(video.id).read()
        assert_mp4(content, width=128, height=64, seconds=2)
        # The plugin's param is validated like any other, naming the client's field.
        with pytest.raises(openai.BadRequestError) as info:
            client.videos.create(model="demo-video", prompt="x", extra_body={"metadata": {"hue": 400}})
        assert info.value.body["param"] == "metadata.hue" and "0 to 359" in info.value.body["message"]  # type: ignore[index]
    # Its extra output is stored beside the video and shown on the DashScope surface, signed like the video.
    task = httpx.get(f"{gw.url}/api/v1/tasks/{video.id}", headers={"Authorization": f"Bearer {gw.key()}"}).json()
    frame = httpx.get(task["output"]["last_frame_url"])
    assert frame.status_code == 200 and frame.headers["content-type"] == "image/png"
    with Image.open(io.BytesIO(frame.content)) as image:
        red, green, blue = image.convert("RGB").getpixel((0, 0))  # type: ignore[misc]
    assert green > red and green > blue  # hue 120 is green: the param reached the plugin


def test_vidgate_models_lists_the_plugins_model(gw: Server) -> None:
    text = cli("models", config=gw.config, env=PLUGIN_ENV).stdout
    row = next(line for line in text.splitlines() if "demo-video" in line)
    assert "demo" in row and "1,2" in row and "128x64" in row and "hue" in row and "0.01" in row


def test_without_the_plugin_the_channel_is_a_config_error(tmp_path: Path) -> None:
    config = write_config(tmp_path, port=free_port(), extra=DEMO_CHANNEL)
    result = cli("models", config=config, check=False)
    said = " ".join((result.stdout + result.stderr).split())
    assert result.returncode == 2 and "provider 'demo' is not registered; registered: ark, dashscope," in said


def test_a_model_without_a_price_stops_startup_and_an_explicit_zero_does_not(tmp_path: Path) -> None:
    channel = """
[[channels]]
name = "peer"
provider = "openai"
base_url = "http://127.0.0.1:9"
api_key = "k"
models = ["house-model"]
"""
    config = write_config(tmp_path, port=free_port(), extra=channel)
    server = Server(config=config, port=free_port(), log=tmp_path / "server.log")
    with pytest.raises(AssertionError, match="no price for house-model"):
        server.start(timeout=30)
    server.stop()
    config.write_text(config.read_text() + '\n[prices]\n"house-model" = 0\n')
    listed = cli("models", config=config).stdout
    assert "house-model" in next(line for line in listed.splitlines() if "house-model" in line)
