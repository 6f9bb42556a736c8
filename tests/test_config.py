"""Configuration: TOML, ${ENV} substitution, the embedded default, --config / $VIDGATE_CONFIG."""

from __future__ import annotations

from pathlib import Path

import pytest

from vidgate.config import config_path, load_settings
from vidgate.errors import ConfigError

FULL = """
public_url    = "http://127.0.0.1:8000/"
database_url  = "sqlite:///var/vidgate.db"
media_dir     = "var/media"
default_model = "vidgate-local"
secret        = "${VIDGATE_SECRET}"
signed_url_ttl = 86400
retention_days = 7
fetch_private_urls = false

[[channels]]
name     = "wan-main"
provider = "dashscope"
base_url = "https://dashscope.aliyuncs.com/"
api_key  = "${DASHSCOPE_API_KEY}"
models   = ["wan2.5-t2v-preview", "wan2.5-i2v-preview"]
model_map = { "wan2.5-i2v-preview" = "wan2.5-i2v-preview" }
priority = 0
weight   = 1
max_in_flight = 10

[prices]
"vidgate-local" = 0.0
"sora-2" = 0.10
"wan2.5-t2v-preview" = { "480P" = 0.05, "720P" = 0.10, "1080P" = 0.15 }
"""


def test_embedded_default_without_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings(None, environ={})
    assert settings.source is None
    assert settings.database_url == "sqlite:///var/vidgate.db"
    assert settings.media_dir == Path("var/media")
    assert settings.default_model == "vidgate-local" and settings.local_enabled
    assert settings.channels == ()


def test_full_example_with_env(tmp_path: Path) -> None:
    path = tmp_path / "v.toml"
    path.write_text(FULL)
    settings = load_settings(path, environ={"VIDGATE_SECRET": "s3", "DASHSCOPE_API_KEY": "sk-ds"})
    assert settings.secret == "s3"
    assert settings.public_url == "http://127.0.0.1:8000"
    channel = settings.channels[0]
    assert (channel.name, channel.provider, channel.api_key, channel.base_url) == (
        "wan-main",
        "dashscope",
        "sk-ds",
        "https://dashscope.aliyuncs.com",
    )
    assert channel.max_in_flight == 10
    assert str(settings.prices["sora-2"]) == "0.1"


def test_missing_env_variable_is_named(tmp_path: Path) -> None:
    path = tmp_path / "v.toml"
    path.write_text(FULL)
    with pytest.raises(ConfigError, match="DASHSCOPE_API_KEY"):
        load_settings(path, environ={"VIDGATE_SECRET": "x"})


def test_unknown_key_and_bad_values_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "v.toml"
    path.write_text('databse_url = "sqlite:///x.db"\n')
    with pytest.raises(ConfigError, match="databse_url"):
        load_settings(path, environ={})
    path.write_text('[[channels]]\nname = "x"\nprovider = "no pe"\n')
    with pytest.raises(ConfigError, match="provider"):
        load_settings(path, environ={})
    path.write_text('[[channels]]\nname = "x"\nprovider = "openai"\nproject = 3\n')
    with pytest.raises(ConfigError, match="project must be a string"):
        load_settings(path, environ={})
    path.write_text("not toml = = 1")
    with pytest.raises(ConfigError, match="TOML"):
        load_settings(path, environ={})
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "missing.toml", environ={})


def test_config_path_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert config_path(None, {}) is None
    (tmp_path / "vidgate.toml").write_text("")
    assert config_path(None, {}) == Path("vidgate.toml")
    assert config_path(None, {"VIDGATE_CONFIG": "/etc/v.toml"}) == Path("/etc/v.toml")
    assert config_path("/x.toml", {"VIDGATE_CONFIG": "/etc/v.toml"}) == Path("/x.toml")


def test_secret_generated_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "v.toml"
    path.write_text(f'media_dir = "{tmp_path / "var" / "media"}"\n')
    first = load_settings(path, environ={}).with_secret()
    second = load_settings(path, environ={}).with_secret()
    assert len(first.secret) == 64 and first.secret == second.secret
    assert (tmp_path / "var" / "secret").stat().st_mode & 0o077 == 0
