"""The one URL guard: every URL vidgate fetches and did not configure itself reaches only public addresses.

The check sits in the HTTP client's network layer, where the connection is made: a host is resolved once,
every address it resolves to is checked, and the socket is opened to one of those checked addresses (never
to the name again, so a DNS answer that changes between check and connect — rebinding — changes nothing).
Each redirect hop is a new request, so it is checked again; TLS still verifies the URL's own host name,
because httpcore hands `server_hostname` to `start_tls` apart from the address it connected to.

A request carries its Policy in its extensions (`policy.extensions()`); without one the client's default
applies. A host the policy allows (a channel's own base_url host for its API calls and results, or any host
when `fetch_private_urls` lifts the guard for inputs and webhooks) is connected to as it is, through a pool
of its own, so a connection made under an allowance is never reused by a request that lacks it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import re
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import httpcore
import httpx

from vidgate.errors import AddressRefused, HostNotResolved

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# (host, port) -> the addresses the host resolves to, as text; OSError when it does not resolve.
Resolver = Callable[[str, int], Awaitable[Sequence[str]]]

EXTENSION = "vidgate.policy"
MAX_REDIRECTS = 5

_SHARED = ipaddress.ip_network("100.64.0.0/10")  # carrier-grade NAT; Alibaba Cloud's metadata service lives here
_UNIQUE_LOCAL = ipaddress.ip_network("fc00::/7")
# Not globally routable per IANA, yet `is_global` on Python 3.11 says otherwise.
_NOT_GLOBAL = (ipaddress.ip_network("192.0.0.0/24"), ipaddress.ip_network("64:ff9b:1::/48"))
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")
_NUMERIC_HOST = re.compile(r"[0-9A-Fa-fXx.]+")
_HOST_NAME = re.compile(r"(?:[A-Za-z0-9._-]|[^\x00-\x7f])+")
_PORT = re.compile(r"[0-9]{1,5}")


# -- URL text ---------------------------------------------------------------------------------------------


def parse_url(text: str) -> httpx.URL:
    """`text` as an absolute http(s) URL with a host, an optional port 1-65535 and no user:password.

    Raises ValueError saying, in words a client can act on, what is wrong with it.
    """
    if any(ord(char) <= 0x20 or ord(char) == 0x7F for char in text):
        raise ValueError("it contains spaces or control characters")
    scheme, sep, rest = text.partition("://")
    if not sep or scheme.lower() not in ("http", "https"):
        raise ValueError("only http:// and https:// URLs are accepted")
    authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
    if "@" in authority:
        raise ValueError("a user name or password in the URL is not accepted")
    if authority.startswith("["):
        end = authority.find("]")
        if end < 0:
            raise ValueError("the [IPv6 address] has no closing bracket")
        host, after = authority[1:end], authority[end + 1 :]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError("the brackets do not hold an IPv6 address") from None
    else:
        host = authority.partition(":")[0]
        after = authority[len(host) :]
        if not host:
            raise ValueError("it has no host")
        if not _HOST_NAME.fullmatch(host):
            raise ValueError("the host has characters a host name cannot have")
    if after:
        port = after[1:] if after.startswith(":") else None
        if port is None:
            raise ValueError("the host is followed by something that is not a port")
        if port and (not _PORT.fullmatch(port) or not 1 <= int(port) <= 65535):
            raise ValueError("the port must be a number from 1 to 65535")
    try:
        return httpx.URL(text)
    except httpx.InvalidURL:
        raise ValueError("it is not a valid URL") from None


def host_of(url: str) -> str:
    """The host of a configured URL (a channel's base_url), as httpx names it in requests."""
    return httpx.URL(url).host.lower()


# -- addresses --------------------------------------------------------------------------------------------


def refused_class(address: IPAddress) -> str | None:
    """Why vidgate does not connect to `address` ("loopback", "private", ...); None when it is public.

    An IPv6 address that carries an IPv4 one (IPv4-mapped, IPv4-compatible, 6to4, Teredo, NAT64) is judged
    by both: `::ffff:127.0.0.1` reaches loopback however global its outer form looks.
    """
    for candidate in (*_embedded(address), address):
        kind = _class(candidate)
        if kind is not None:
            return kind
    return None


def _class(ip: IPAddress) -> str | None:
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    if ip.is_multicast:
        return "multicast"
    if ip in _SHARED:
        return "shared (carrier-grade NAT)"
    if ip in _UNIQUE_LOCAL:
        return "unique-local"
    if isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local:
        return "site-local"
    if ip.is_private or any(ip in net for net in _NOT_GLOBAL):
        return "private"
    if ip.is_reserved or not ip.is_global:
        return "reserved"
    return None


def _embedded(ip: IPAddress) -> Iterator[ipaddress.IPv4Address]:
    if not isinstance(ip, ipaddress.IPv6Address):
        return
    if ip.ipv4_mapped is not None:
        yield ip.ipv4_mapped
    if ip.sixtofour is not None:
        yield ip.sixtofour
    if ip.teredo is not None:
        yield ip.teredo[1]
    if ip in _NAT64 or (ip in _IPV4_COMPATIBLE and int(ip) > 1):  # :: and ::1 are IPv6's own
        yield ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)


def ip_literal(host: str) -> IPAddress | None:
    """The address a host names by itself, in any form the system resolver would read as one.

    Besides dotted quads and IPv6 this takes inet_aton's forms (`2130706433`, `0x7f.1`, `0177.0.0.1`), so
    they are judged as the addresses they are rather than sent to a resolver.
    """
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if _NUMERIC_HOST.fullmatch(host) and any(char.isdigit() for char in host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


async def system_resolver(host: str, port: int) -> Sequence[str]:
    """The host's addresses from the operating system's resolver (one lookup)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


# -- policy -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Policy:
    """Which hosts a request may reach whatever they resolve to; every other host must be public."""

    private: bool = False  # fetch_private_urls: the operator lifts the guard (inputs, webhooks)
    hosts: frozenset[str] = frozenset()  # a channel's own base_url host, for its API calls and results

    @classmethod
    def of_channel(cls, base_url: str) -> Policy:
        """The policy of a channel's result downloads: its own base_url host, public addresses elsewhere."""
        return cls(hosts=frozenset({host_of(base_url)}))

    def allows(self, host: str) -> bool:
        return self.private or host.lower() in self.hosts

    def extensions(self) -> dict[str, Any]:
        """What to pass as a request's `extensions=` so the guard applies this policy to it."""
        return {EXTENSION: self}


# -- the network layer ------------------------------------------------------------------------------------


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """Resolves a host once, refuses it unless every address is public, connects to a checked address."""

    def __init__(self, inner: httpcore.AsyncNetworkBackend, resolver: Resolver) -> None:
        self._inner = inner
        self._resolve = resolver

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = await self.checked_addresses(host, port, timeout)
        failure: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(
                    address, port, timeout=timeout, local_address=local_address, socket_options=socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        assert failure is not None  # checked_addresses never returns an empty list
        raise failure

    async def checked_addresses(self, host: str, port: int, timeout: float | None) -> list[str]:
        """Every address of `host` (one lookup), each one public; AddressRefused otherwise."""
        literal = ip_literal(host)
        if literal is not None:
            kind = refused_class(literal)
            if kind is not None:
                raise AddressRefused(host, kind, resolved=False)
            return [str(literal)]
        try:
            async with asyncio.timeout(timeout):
                answers = await self._resolve(host, port)
            addresses = [ipaddress.ip_address(answer) for answer in answers]
        except (TimeoutError, OSError, ValueError) as exc:
            raise HostNotResolved(host) from exc
        if not addresses:
            raise HostNotResolved(host)
        for address in addresses:
            kind = refused_class(address)
            if kind is not None:
                raise AddressRefused(host, kind, resolved=True)
        return [str(address) for address in addresses]

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise AddressRefused(path, "unix socket", resolved=False)

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


# httpcore's exceptions as httpx's (the same table as httpx's own transport), most specific first.
_EXCEPTIONS: tuple[tuple[type[Exception], type[httpx.HTTPError]], ...] = (
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.TimeoutException, httpx.TimeoutException),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.ProtocolError, httpx.ProtocolError),
)


@contextlib.contextmanager
def _httpx_errors() -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        for theirs, ours in _EXCEPTIONS:
            if isinstance(exc, theirs):
                raise ours(str(exc)) from exc
        raise


class _ResponseStream(httpx.AsyncByteStream):
    def __init__(self, stream: Any) -> None:
        self._stream = stream

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _httpx_errors():
            async for part in self._stream:
                yield part

    async def aclose(self) -> None:
        if hasattr(self._stream, "aclose"):
            await self._stream.aclose()


class GuardedTransport(httpx.AsyncBaseTransport):
    """An httpx transport whose connections to hosts the request's Policy does not allow go through the guard."""

    def __init__(
        self,
        *,
        policy: Policy | None = None,
        resolver: Resolver = system_resolver,
        backend: httpcore.AsyncNetworkBackend | None = None,
        verify: ssl.SSLContext | bool = True,
        limits: httpx.Limits | None = None,
    ) -> None:
        self._policy = policy or Policy()
        inner = backend if backend is not None else httpcore.AnyIOBackend()
        limits = limits or httpx.Limits(max_connections=100, max_keepalive_connections=20, keepalive_expiry=5.0)
        options: dict[str, Any] = {
            "ssl_context": httpx.create_ssl_context(verify=verify),
            "max_connections": limits.max_connections,
            "max_keepalive_connections": limits.max_keepalive_connections,
            "keepalive_expiry": limits.keepalive_expiry,
        }
        # The allowed hosts are the channels' own API hosts, read over and over by the poller: their connections
        # (TLS handshakes are the dearest part of a poll) are kept open longer.
        # (Not too many: httpcore checks every pooled connection for expiry on each request.)
        warm = {**options, "max_connections": max(200, limits.max_connections or 0)}
        warm["keepalive_expiry"] = max(60.0, limits.keepalive_expiry or 0.0)
        self._allowed = httpcore.AsyncConnectionPool(network_backend=inner, **warm)
        self._guarded = httpcore.AsyncConnectionPool(network_backend=GuardedBackend(inner, resolver), **options)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, httpx.AsyncByteStream)
        port = request.url.port
        if port is not None and not 1 <= port <= 65535:
            # The resolver would take it modulo 65536 (99999 becomes 34463): never let a port wrap.
            raise httpx.ConnectError(f"port {port} is not a TCP port", request=request)
        extensions = dict(request.extensions)
        policy = extensions.pop(EXTENSION, self._policy)
        pool = self._allowed if policy.allows(request.url.host) else self._guarded
        core = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=extensions,
        )
        with _httpx_errors():
            response = await pool.handle_async_request(core)
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_ResponseStream(response.stream),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        await self._allowed.aclose()
        await self._guarded.aclose()


def client(
    *,
    policy: Policy | None = None,
    resolver: Resolver = system_resolver,
    backend: httpcore.AsyncNetworkBackend | None = None,
    timeout: httpx.Timeout | None = None,
) -> httpx.AsyncClient:
    """vidgate's one outbound HTTP client: guarded, no redirects unless asked (then at most MAX_REDIRECTS),
    no proxy or credentials taken from the environment."""
    return httpx.AsyncClient(
        transport=GuardedTransport(policy=policy, resolver=resolver, backend=backend),
        timeout=timeout or httpx.Timeout(30.0, connect=10.0),
        follow_redirects=False,
        max_redirects=MAX_REDIRECTS,
        trust_env=False,
    )


@contextlib.asynccontextmanager
async def get(
    http: httpx.AsyncClient,
    url: str,
    *,
    policy: Policy,
    headers: dict[str, str] | None = None,
    timeout: httpx.Timeout | None = None,
) -> AsyncIterator[httpx.Response]:
    """A streamed GET that follows at most MAX_REDIRECTS redirects, each hop under `policy`, without reading
    the bodies of the redirect answers. httpx.TooManyRedirects past the limit."""
    request = http.build_request(
        "GET", url, headers=headers, timeout=timeout or httpx.USE_CLIENT_DEFAULT, extensions=policy.extensions()
    )
    for _ in range(MAX_REDIRECTS + 1):
        response = await http.send(request, stream=True, follow_redirects=False)
        if response.next_request is None:
            try:
                yield response
            finally:
                await response.aclose()
            return
        await response.aclose()
        request = response.next_request
    raise httpx.TooManyRedirects(f"more than {MAX_REDIRECTS} redirects", request=request)
