"""The `vidgate` command: serve, keys, generate, models."""

from __future__ import annotations

import asyncio
import copy
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any, TypeVar

import httpx
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy.ext.asyncio import AsyncEngine

from vidgate import netguard
from vidgate.auth import KeyRing, new_webhook_secret
from vidgate.config import Settings, load_settings
from vidgate.engine.health import load_health
from vidgate.engine.pricing import from_micros, to_micros
from vidgate.engine.webhooks import recent as recent_deliveries
from vidgate.errors import ConfigError, VidgateError
from vidgate.redact import Redactor
from vidgate.store import keys as key_store
from vidgate.store import tasks as task_store
from vidgate.store import usage as usage_store
from vidgate.store.db import create_engine, migrate

app = typer.Typer(help="vidgate: one key and one API for video generation.", no_args_is_help=True, add_completion=False)
keys_app = typer.Typer(help="Create, list and revoke API keys.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")

err = Console(stderr=True)
out = Console()
if not out.is_terminal:
    # Piped into a script or a file: do not wrap table cells at 80 columns.
    out = Console(width=400)
T = TypeVar("T")
# Where `make run` keeps the key it created (relative to the folder it runs in); `generate` falls back to it.
DEV_KEY = "var/dev-key"

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", help="Config file (default: $VIDGATE_CONFIG, then ./vidgate.toml).")
]


def _settings(config: Path | None) -> Settings:
    try:
        return load_settings(config)
    except ConfigError as exc:
        err.print(f"[red]config error:[/red] {exc}")
        raise typer.Exit(2) from exc


def _with_db(settings: Settings, action: Callable[[AsyncEngine], Awaitable[T]]) -> T:
    try:
        settings = settings.with_secret()
    except ConfigError as exc:
        err.print(f"[red]config error:[/red] {exc}")
        raise typer.Exit(2) from exc
    migrate(settings.database_url, secret=settings.secret)

    async def run() -> T:
        engine = create_engine(settings.database_url, secret=settings.secret, redactor=Redactor.for_settings(settings))
        try:
            return await action(engine)
        finally:
            await engine.dispose()

    return asyncio.run(run())


@app.command()
def serve(
    config: ConfigOpt = None,
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
) -> None:
    """Run the gateway (migrations are applied first)."""
    import uvicorn

    from vidgate.app import SHUTDOWN_REQUESTS_S, create_app

    settings = _settings(config)
    try:
        application = create_app(settings)
    except VidgateError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    err.print(f"vidgate on http://{host}:{port}/  (playground /, API /v1, docs /docs)")
    # vidgate's own loggers write through uvicorn's handler at the same level (the app puts its redacting
    # filter on that handler), instead of Python's last-resort handler, which drops everything below WARNING.
    log_config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    log_config["loggers"]["vidgate"] = {"handlers": ["default"], "level": log_level.upper(), "propagate": False}
    # On SIGTERM: stop accepting, give in-flight requests (a client trickling a body too) a bounded time.
    uvicorn.run(
        application,
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,
        log_config=log_config,
        timeout_graceful_shutdown=SHUTDOWN_REQUESTS_S,
    )


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option("--name", help="A label for the key.")],
    models: Annotated[str | None, typer.Option(help="Comma-separated models the key may use (default: all).")] = None,
    rpm: Annotated[int | None, typer.Option(help="Requests per minute allowed (default: unlimited).", min=1)] = None,
    quota: Annotated[str | None, typer.Option(help="Spending limit in USD (default: none).")] = None,
    webhook: Annotated[
        str | None, typer.Option(help="URL that receives video.completed / video.failed events.")
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Create a key; print it alone on line 1 (shown only this once) and, with --webhook, its secret on line 2."""
    settings = _settings(config)
    allowed = [m.strip() for m in models.split(",") if m.strip()] if models else None
    quota_micros = _quota(quota)
    if webhook is not None:
        try:
            netguard.parse_url(webhook)
        except ValueError as exc:
            err.print(f"[red]--webhook must be an http(s) URL: {exc}[/red]")
            raise typer.Exit(2) from exc
    secret = new_webhook_secret() if webhook else None

    async def create(engine: AsyncEngine) -> str:
        key, _record = await KeyRing(engine).create(
            name=name, models=allowed, rpm=rpm, quota_micros=quota_micros, webhook_url=webhook, webhook_secret=secret
        )
        return key

    typer.echo(_with_db(settings, create))
    if secret:
        typer.echo(secret)


def _quota(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        value = Decimal(text)
    except InvalidOperation as exc:
        err.print(f"[red]--quota must be a number of USD, got {text!r}[/red]")
        raise typer.Exit(2) from exc
    if value < 0:
        err.print("[red]--quota cannot be negative[/red]")
        raise typer.Exit(2)
    return to_micros(value)


@keys_app.command("list")
def keys_list(config: ConfigOpt = None) -> None:
    """List keys (never their secrets)."""

    async def collect(engine: AsyncEngine) -> tuple[list[key_store.KeyRecord], dict[str, int]]:
        return await key_store.list_keys(engine), await usage_store.spent_by_key(engine)

    records, spent = _with_db(_settings(config), collect)
    table = Table("id", "name", "key", "models", "rpm", "spent (USD)", "quota (USD)", "webhook", "created", "state")
    for rec in records:
        table.add_row(
            rec.id,
            rec.name,
            rec.key_prefix,
            ",".join(rec.models) if rec.models is not None else "all",
            str(rec.rpm or "-"),
            str(from_micros(spent.get(rec.id, 0))),
            str(from_micros(rec.quota_micros)) if rec.quota_micros is not None else "-",
            rec.webhook_url or "-",
            time.strftime("%Y-%m-%d %H:%M", time.gmtime(rec.created_at)),
            "active" if rec.active else "revoked",
        )
    out.print(table)


@keys_app.command("revoke")
def keys_revoke(key_id: Annotated[str, typer.Argument(help="The key's id (key_…).")], config: ConfigOpt = None) -> None:
    """Revoke a key; requests with it fail from then on."""

    async def revoke(engine: AsyncEngine) -> bool:
        return await key_store.revoke_key(engine, key_id=key_id)

    if not _with_db(_settings(config), revoke):
        err.print(f"[red]no active key {key_id}[/red]")
        raise typer.Exit(1)
    err.print(f"revoked {key_id}")


@keys_app.command("check", hidden=True)
def keys_check(
    key_file: Annotated[
        Path | None,
        typer.Option("--key-file", help="File whose first line is the key; '-' or none reads stdin (never argv)."),
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Exit 0 when the key is valid (used by `make run` to reuse its key). The key is read from a file or stdin,
    so it never shows on a command line (`ps`)."""
    if key_file is None or str(key_file) == "-":
        key = sys.stdin.readline().strip()
    else:
        try:
            key = key_file.read_text().partition("\n")[0].strip()
        except OSError as exc:
            raise typer.Exit(1) from exc

    async def check(engine: AsyncEngine) -> bool:
        try:
            await KeyRing(engine).authenticate(f"Bearer {key}")
        except VidgateError:
            return False
        return True

    if not key or not _with_db(_settings(config), check):
        raise typer.Exit(1)


@app.command()
def models(config: ConfigOpt = None) -> None:
    """Every routable model: provider, modes, seconds, sizes, audio, price."""
    from vidgate.providers.registry import build_registry

    settings = _settings(config)

    async def collect() -> list[Any]:
        async with httpx.AsyncClient() as http:
            return build_registry(settings, http).models()

    try:
        specs = asyncio.run(collect())
    except ConfigError as exc:
        err.print(f"[red]config error:[/red] {exc}")
        raise typer.Exit(2) from exc
    table = Table("model", "provider", "modes", "seconds", "sizes", "default", "audio", "params", "price (USD/s)")
    for spec in specs:
        seconds = spec.seconds
        shown = (
            f"{seconds[0]}-{seconds[-1]}"
            if len(seconds) > 4 and list(seconds) == list(range(seconds[0], seconds[-1] + 1))
            else ",".join(map(str, seconds))
        )
        price = settings.prices.get(spec.name, spec.price)
        price_text = ", ".join(f"{k} {v}" for k, v in price.items()) if isinstance(price, Mapping) else str(price)
        params = "; ".join(f"{name} ({param.allowed()})" for name, param in sorted(spec.params.items()))
        table.add_row(
            spec.name,
            spec.provider,
            ",".join(sorted(spec.modes)),
            shown,
            "; ".join(spec.allowed_sizes()),
            spec.default_size,
            "yes" if spec.audio else "no",
            params or "-",
            price_text,
        )
    out.print(table)


@app.command()
def channels(config: ConfigOpt = None) -> None:
    """Each channel: provider, models, unfinished tasks, health."""
    from vidgate.providers.registry import build_registry

    settings = _settings(config)

    async def collect(engine: AsyncEngine) -> tuple[Any, dict[str, int], dict[str, dict[str, object]]]:
        async with httpx.AsyncClient() as http:
            registry = build_registry(settings, http)
        return registry, await task_store.in_flight_by_channel(engine), await load_health(engine)

    registry, in_flight, health = _with_db(settings, collect)
    table = Table("channel", "provider", "models", "priority", "weight", "in flight", "health", "last error")
    now = time.time()
    for channel in registry.channels:
        served = [
            spec.name for spec in registry.models() if channel.serves(spec.name) and spec.provider == channel.provider
        ]
        state = health.get(channel.name, {})
        shown = str(state.get("state", "closed"))
        open_until = state.get("open_until")
        if shown == "open" and isinstance(open_until, float):
            shown = f"open ({max(0, int(open_until - now))} s left)" if open_until > now else "open (trial due)"
        cap = f"/{channel.max_in_flight}" if channel.max_in_flight else ""
        table.add_row(
            channel.name,
            channel.provider,
            ",".join(served),
            str(channel.priority),
            str(channel.weight),
            f"{in_flight.get(channel.name, 0)}{cap}",
            "healthy" if shown == "closed" else shown,
            str(state.get("last_error") or "-"),
        )
    out.print(table)


webhooks_app = typer.Typer(help="Webhook deliveries.", no_args_is_help=True)
app.add_typer(webhooks_app, name="webhooks")


@webhooks_app.command("list")
def webhooks_list(
    config: ConfigOpt = None, limit: Annotated[int, typer.Option(help="How many, newest first.", min=1)] = 50
) -> None:
    """Recent webhook deliveries and their outcome."""

    async def collect(engine: AsyncEngine) -> list[Any]:
        return await recent_deliveries(engine, limit=limit)

    rows = _with_db(_settings(config), collect)
    table = Table("event", "type", "video", "url", "status", "attempts", "last answer", "created")
    for row in rows:
        answer = str(row["last_status"] or row["last_error"] or "-")
        table.add_row(
            row["id"],
            row["event_type"],
            row["task_id"],
            row["url"],
            row["status"],
            str(row["attempts"]),
            answer,
            time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(row["created_at"])),
        )
    out.print(table)


@app.command()
def generate(
    prompt: Annotated[str, typer.Argument(help="What the video shows.")],
    model: Annotated[str | None, typer.Option(help="Model (default: the server's).")] = None,
    seconds: Annotated[str | None, typer.Option(help="Length in seconds.")] = None,
    size: Annotated[str | None, typer.Option(help="WxH or a tier such as 720P.")] = None,
    image: Annotated[
        Path | None, typer.Option(help="First-frame image file (image-to-video).", exists=True, dir_okay=False)
    ] = None,
    out_file: Annotated[Path | None, typer.Option("--out", help="Where to write the MP4 (default: <id>.mp4).")] = None,
    base_url: Annotated[
        str, typer.Option(envvar="VIDGATE_BASE_URL", help="The gateway's URL, with or without /v1.")
    ] = "http://127.0.0.1:8000",
    api_key: Annotated[
        str | None,
        typer.Option(envvar="VIDGATE_API_KEY", help=f"API key (sk-vg-…); default: the first line of ./{DEV_KEY}."),
    ] = None,
) -> None:
    """Submit through the OpenAI API, show progress, and download the MP4."""
    key = api_key or _dev_key()
    fields = {k: v for k, v in {"prompt": prompt, "model": model, "seconds": seconds, "size": size}.items() if v}
    with httpx.Client(base_url=api_root(base_url), headers={"Authorization": f"Bearer {key}"}, timeout=120) as client:
        files = {"input_reference": (image.name, image.read_bytes())} if image else None
        video = _check(client.post("/videos", data=fields, files=files))
        err.print(f"created {video['id']} ({video['model']}, {video['size']}, {video['seconds']} s)")
        video = _follow(client, video)
        if video["status"] != "completed":
            error = video.get("error") or {}
            err.print(f"[red]{video['status']}:[/red] {error.get('message', '')} ({error.get('code', '')})")
            raise typer.Exit(1)
        target = out_file or Path(f"{video['id']}.mp4")
        with client.stream("GET", f"/videos/{video['id']}/content") as response:
            if response.status_code != 200:
                _check(httpx.Response(response.status_code, content=response.read()))
            with target.open("wb") as handle:
                for chunk in response.iter_bytes():
                    handle.write(chunk)
    err.print(f"wrote {target} ({target.stat().st_size} bytes)")
    typer.echo(str(target))


def api_root(base_url: str) -> str:
    """The OpenAI API root of a gateway given as its server URL, with or without /v1."""
    base = base_url.strip().rstrip("/")
    return base if base.endswith("/v1") else f"{base}/v1"


def _dev_key() -> str:
    """The key `make run` wrote (first line of ./var/dev-key), said aloud; a clear exit when there is none."""
    path = Path(DEV_KEY)
    try:
        key = path.read_text().splitlines()[0].strip() if path.is_file() else ""
    except (OSError, UnicodeDecodeError, IndexError):
        key = ""
    if not key:
        err.print(
            f"[red]an API key is needed:[/red] --api-key, $VIDGATE_API_KEY, or ./{DEV_KEY} (written by `make run`; "
            "none here). Create one with `vidgate keys create --name me`."
        )
        raise typer.Exit(2)
    err.print(f"using the dev key from ./{DEV_KEY} ({key[:9]}…)")
    return key


def _follow(client: httpx.Client, video: dict[str, Any]) -> dict[str, Any]:
    columns = (TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err) as bar:
        task = bar.add_task(video["status"], total=100, completed=video.get("progress", 0))
        while video["status"] in ("queued", "in_progress"):
            response = client.get(f"/videos/{video['id']}")
            wait_ms = int(response.headers.get("openai-poll-after-ms", "1000"))
            video = _check(response)
            bar.update(task, completed=video.get("progress", 0), description=video["status"])
            if video["status"] in ("queued", "in_progress"):
                time.sleep(wait_ms / 1000)
        bar.update(task, completed=100 if video["status"] == "completed" else video.get("progress", 0))
    return video


def _check(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        body = {}
    if response.status_code >= 400:
        error = body.get("error", {}) if isinstance(body, dict) else {}
        where = f" ({error['param']})" if error.get("param") else ""
        err.print(f"[red]HTTP {response.status_code}{where}:[/red] {error.get('message', response.text[:300])}")
        raise typer.Exit(1)
    result: dict[str, Any] = body
    return result


def main() -> None:
    """Entry point of the `vidgate` console script."""
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
