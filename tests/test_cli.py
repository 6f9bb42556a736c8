"""The CLI contract: keys create|list|revoke, models, generate."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.helpers import Server, assert_mp4, cli, png_bytes


def test_keys_create_prints_only_the_key_and_revoke_works(server: Server) -> None:
    result = cli("keys", "create", "--name", "cli-test", "--rpm", "100", config=server.config)
    lines = result.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("sk-vg-")
    key = lines[0]
    assert httpx.get(f"{server.url}/v1/videos", headers={"Authorization": f"Bearer {key}"}).status_code == 200
    listing = cli("keys", "list", config=server.config).stdout
    assert "cli-test" in listing and key not in listing
    key_id = next(line.split()[1] for line in listing.splitlines() if "cli-test" in line)
    assert key_id.startswith("key_")
    cli("keys", "revoke", key_id, config=server.config)
    assert "revoked" in cli("keys", "list", config=server.config).stdout
    # The server trusts a cached lookup for a few seconds at most.
    import time

    deadline = time.monotonic() + 10
    while httpx.get(f"{server.url}/v1/videos", headers={"Authorization": f"Bearer {key}"}).status_code != 401:
        assert time.monotonic() < deadline
        time.sleep(0.5)
    assert cli("keys", "revoke", key_id, config=server.config, check=False).returncode == 1


def test_models_lists_local(server: Server) -> None:
    text = cli("models", config=server.config).stdout
    assert "vidgate-local" in text and "local" in text and "1-20" in text


def test_generate_writes_the_mp4(server: Server, tmp_path: Path) -> None:
    out = tmp_path / "fox.mp4"
    result = cli(
        "generate",
        "a fox",
        "--seconds",
        "1",
        "--size",
        "160x96",
        "--out",
        str(out),
        "--base-url",
        f"{server.url}/v1",
        "--api-key",
        server.key("gen"),
    )
    assert result.stdout.strip() == str(out)
    assert_mp4(out, width=160, height=96, seconds=1)
    image = tmp_path / "first.png"
    image.write_bytes(png_bytes(200, 120))
    out2 = tmp_path / "i2v.mp4"
    cli(
        "generate",
        "pan",
        "--seconds",
        "1",
        "--size",
        "128x128",
        "--image",
        str(image),
        "--out",
        str(out2),
        "--base-url",
        f"{server.url}/v1",
        "--api-key",
        server.key("gen"),
    )
    assert_mp4(out2, width=128, height=128, seconds=1)


def test_generate_takes_the_server_url_with_or_without_v1(server: Server, tmp_path: Path) -> None:
    for n, base_url in enumerate((server.url, f"{server.url}/", f"{server.url}/v1/")):
        out = tmp_path / f"{n}.mp4"
        args = ("generate", "a fox", "--seconds", "1", "--size", "64x64", "--out", str(out), "--base-url", base_url)
        result = cli(*args, "--api-key", server.key("gen"))
        assert result.stdout.strip() == str(out), base_url
        assert_mp4(out, width=64, height=64, seconds=1)


def test_generate_finds_the_dev_key_and_says_so(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("VIDGATE_API_KEY", raising=False)
    folder = tmp_path / "checkout"
    (folder / "var").mkdir(parents=True)
    key = server.key("dev")
    (folder / "var" / "dev-key").write_text(f"{key}\n")  # as `make run` writes it
    out = tmp_path / "dev.mp4"
    args = ("generate", "a fox", "--seconds", "1", "--size", "64x64", "--out", str(out), "--base-url", server.url)
    result = cli(*args, cwd=folder)
    assert "using the dev key from ./var/dev-key" in result.stderr
    assert key not in result.stderr  # named, never printed whole
    assert_mp4(out, width=64, height=64, seconds=1)
    videos = httpx.get(f"{server.url}/v1/videos", headers={"Authorization": f"Bearer {key}"}).json()["data"]
    assert len(videos) == 1 and videos[0]["prompt"] == "a fox"

    # An explicit key wins over the file, silently.
    other = server.key("gen")
    result = cli(*args, "--api-key", other, cwd=folder)
    assert "dev key" not in result.stderr

    # No key anywhere: a clear error naming every place a key can come from, and nothing is sent.
    empty = tmp_path / "elsewhere"
    empty.mkdir()
    refused = cli(*args, cwd=empty, check=False)
    assert refused.returncode == 2 and refused.stdout == ""
    message = " ".join(refused.stderr.split())
    assert all(place in message for place in ("--api-key", "$VIDGATE_API_KEY", "./var/dev-key", "make run")), message


def test_generate_reports_refusals(server: Server, tmp_path: Path) -> None:
    result = cli(
        "generate",
        "x",
        "--seconds",
        "99",
        "--base-url",
        f"{server.url}/v1",
        "--api-key",
        server.key("gen"),
        check=False,
    )
    assert result.returncode == 1 and "seconds" in result.stderr


def test_missing_env_in_config_is_a_clear_startup_error(tmp_path: Path) -> None:
    config = tmp_path / "v.toml"
    config.write_text('secret = "${VIDGATE_TEST_UNSET_SECRET}"\n')
    result = cli("keys", "list", config=config, check=False)
    assert result.returncode == 2 and "VIDGATE_TEST_UNSET_SECRET" in result.stderr


ALL_PROVIDERS = """
[[channels]]
name = "sora"
provider = "openai"
api_key = "sk-x"
[[channels]]
name = "wan"
provider = "dashscope"
api_key = "sk-x"
[[channels]]
name = "kling"
provider = "kling"
access_key = "ak"
secret_key = "sk"
[[channels]]
name = "jimeng"
provider = "jimeng"
access_key = "ak"
secret_key = "sk"
[[channels]]
name = "vidu"
provider = "vidu"
api_key = "vda"

[prices]
# Not in vidgate's references: an operator routing these states them (startup refuses them otherwise).
jimeng_t2v_v30 = 0.05
jimeng_t2v_v30_1080p = 0.07
jimeng_i2v_first_v30 = 0.05
jimeng_i2v_first_v30_1080 = 0.07
jimeng_i2v_first_tail_v30 = 0.05
jimeng_i2v_first_tail_v30_1080 = 0.07
jimeng_ti2v_v30_pro = 0.1

viduq2 = 0.05
viduq2-pro = 0.08
viduq2-turbo = 0.05
viduq2-pro-fast = 0.04
"vidu2.0" = 0.04
"""


def test_models_lists_every_provider(tmp_path: Path) -> None:
    config = tmp_path / "v.toml"
    config.write_text(f'media_dir = "{tmp_path / "media"}"\n' + ALL_PROVIDERS)
    text = cli("models", config=config).stdout
    rows = {line.split("│")[1].strip(): line for line in text.splitlines() if line.startswith("│")}
    seeds = {
        "sora-2": "openai", "sora-2-pro": "openai",
        "wan2.5-t2v-preview": "dashscope", "wan2.5-i2v-preview": "dashscope",
        "wan2.2-i2v-flash": "dashscope", "wan2.2-i2v-plus": "dashscope", "wanx2.1-i2v-plus": "dashscope",
        "wanx2.1-i2v-turbo": "dashscope", "wan2.2-kf2v-flash": "dashscope", "kling-v1": "kling",
        "kling-v2-master": "kling", "jimeng_vgfm_t2v_l20": "jimeng", "jimeng_vgfm_i2v_l20": "jimeng", "viduq1": "vidu",
        "vidgate-local": "local",
    }  # fmt: skip
    for model, provider in seeds.items():
        assert model in rows, model
        cells = [cell.strip() for cell in rows[model].split("│")[1:-1]]
        assert cells[1] == provider and cells[2] and cells[3] and cells[4], cells
    assert "4,8,12" in rows["sora-2"] and "720x1280" in rows["sora-2"]
    assert "1792x1024" in rows["sora-2-pro"] and "1792x1024" not in rows["sora-2"]
