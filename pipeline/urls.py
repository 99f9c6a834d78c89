"""Which hosts a fetch may reach: a URL from untrusted input (a release file) may name only public
http(s) hosts, never this machine, its private networks or link-local ranges (cloud metadata services
live there). A name is resolved and refused when ANY of its addresses is not public."""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable
from urllib.parse import urlsplit

from pipeline.errors import StageError

Resolver = Callable[[str, int], list[str]]

#: Sites known by name (rate limits, pauses); any other host is its own site, named by its host.
SITES = {"youtube": ("youtube.com", "youtu.be", "youtube-nocookie.com"), "vimeo": ("vimeo.com",)}


def site_of(url: str) -> str:
    """The site a fetch of ``url`` goes to: "youtube" / "vimeo" for their domains and yt-dlp's YouTube
    searches (``ytsearch10:...``), else the host (with its port: two loopback servers are two sites)."""
    prefix = url.split(":", 1)[0].lower()
    if re.fullmatch(r"ytsearch(date|all)?\d*", prefix):
        return "youtube"
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        port = parts.port
    except ValueError:
        return "other"
    for site, domains in SITES.items():
        if any(host == d or host.endswith("." + d) for d in domains):
            return site
    if not host:
        return "other"
    host = host.removeprefix("www.")
    return f"{host}:{port}" if port else host


class PrivateUrlRefused(StageError):
    """A fetch refused because a URL it needs leads to a non-public address (permanent)."""

    def __init__(self, message: str) -> None:
        super().__init__("download", message, permanent=True)

    def __reduce__(self):  # noqa: ANN204 - one argument, not StageError's two
        return (type(self), (self.args[0],))


def resolve_host(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (the system resolver, as yt-dlp's requests will use)."""
    return sorted({info[4][0] for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)})


def address_kind(address: str) -> str | None:
    """What makes ``address`` non-public ("loopback", "private", "link-local", ...), or None when public."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # an IPv6 scope (fe80::1%eth0) is link-local anyway
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    for attr, kind in (("is_loopback", "loopback"), ("is_unspecified", "unspecified"), ("is_link_local", "link-local"),
                       ("is_private", "private"), ("is_multicast", "multicast"), ("is_reserved", "reserved")):
        if getattr(ip, attr):
            return kind
    return None if ip.is_global else "non-public"


def private_url_problem(url: str, resolve: Resolver = resolve_host) -> str | None:
    """Why ``url`` may not be fetched from untrusted input (not http(s), or a host with a non-public
    address), or None. A host that does not resolve passes: its download fails and says so."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError as err:
        return f"{url!r} is not a URL ({err})"
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not host:
        return f"{url}: only http(s) URLs with a host are fetched"
    try:
        addresses = [str(ipaddress.ip_address(host))]
    except ValueError:
        try:
            addresses = resolve(host, port or (443 if scheme == "https" else 80))
        except (OSError, UnicodeError):
            return None
    for a in addresses:
        if (kind := address_kind(a)) is not None:
            where = host if host == a else f"{host} ({a})"
            return f"{url}: {where} is a {kind} address; only public hosts are fetched for a release " \
                   "(--allow-private-urls fetches from private networks)"
    return None
